package e2e

import (
	"fmt"
	"time"
)

// DefaultGrace is how long after a rekey a Receiver still accepts frames of
// the previous epoch, unless configured otherwise.
const DefaultGrace = 5 * time.Minute

// KeyRing is what a [Receiver] needs to know about rooms, supplied by the
// caller (the client keeps it in step with the control plane). Its methods
// must be safe for concurrent use.
type KeyRing interface {
	// RoomState returns the mode and current epoch of room. An error (an
	// unknown room, say) makes the Receiver drop the frame with that error.
	RoomState(room string) (RoomState, error)
	// RoomKey returns the room key of room at epoch. The Receiver neither
	// keeps nor modifies it. It is called only for frames whose signature
	// verified.
	RoomKey(room string, epoch uint64) ([]byte, error)
	// IsMember reports whether sender (a user public key) is a current
	// member of room.
	IsMember(room, sender string) bool
}

// RoomState is what a Receiver needs to know about a room's keys.
type RoomState struct {
	// Cleartext reports a cleartext room, whose frames are signed but not
	// sealed and whose epoch is always 0.
	Cleartext bool
	// Epoch is the room's current epoch.
	Epoch uint64
	// Since is when the receiver moved to Epoch (learned of the rekey): the
	// previous epoch's frames are accepted until Since plus the grace
	// period. The zero time accepts none.
	Since time.Time
	// Previous is the epoch in force before Epoch. Epoch numbers may skip
	// values (a rekey that lost its race or crashed leaves its number
	// unused), so the previous epoch is not always Epoch-1; zero means
	// Epoch-1.
	Previous uint64
}

// ReceiverConfig configures a [Receiver].
type ReceiverConfig struct {
	// Keys supplies room states, room keys and members. Required.
	Keys KeyRing
	// Grace is how long after Since the previous epoch's frames are still
	// accepted; 0 means DefaultGrace.
	Grace time.Duration
	// Replay is the replay window; nil means a new one with
	// DefaultMaxTracked windows.
	Replay *ReplayWindow
}

// valid checks c; every error wraps ErrConfigValidation.
func (c *ReceiverConfig) valid() error {
	if c.Keys == nil {
		return fmt.Errorf("%w: no key ring", ErrConfigValidation)
	}
	if c.Grace < 0 {
		return fmt.Errorf("%w: negative grace period %s", ErrConfigValidation, c.Grace)
	}
	return nil
}

// Receiver checks and opens the frames a subscriber receives, for any number
// of rooms. Make one with [NewReceiver]. It is safe for concurrent use if its
// KeyRing is.
type Receiver struct {
	keys   KeyRing
	grace  time.Duration
	replay *ReplayWindow
}

// NewReceiver returns a receiver for cfg. The error matches
// [ErrConfigValidation].
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	if err := cfg.valid(); err != nil {
		return nil, fmt.Errorf("new receiver: %w", err)
	}
	r := &Receiver{keys: cfg.Keys, grace: cfg.Grace, replay: cfg.Replay}
	if r.grace == 0 {
		r.grace = DefaultGrace
	}
	if r.replay == nil {
		r.replay = NewReplayWindow(DefaultMaxTracked)
	}
	return r, nil
}

// Received is a frame that passed every check, with its payload.
type Received struct {
	// Frame is the frame as received.
	Frame Frame
	// ID is the frame's message ID.
	ID string
	// Payload is the decrypted payload (in a cleartext room, Frame.CT).
	Payload []byte
}

// Receive decodes wire, a frame that arrived on room's subject, and accepts
// it as [Receiver.Accept] does.
func (r *Receiver) Receive(room string, wire []byte, now time.Time) (Received, error) {
	f, err := Decode(wire)
	if err != nil {
		return Received{}, fmt.Errorf("receive: %w", err)
	}
	return r.Accept(room, f, now)
}

// Accept checks f, a frame that arrived on room's subject, at time now, and
// returns its payload. The checks run in this order, cheap ones first and
// the signature before any key is used:
//
//  1. f is well formed ([ErrMalformedFrame], [ErrUnsupportedVersion]) and
//     names room ([ErrWrongRoom]);
//  2. f is cleartext exactly when the room is ([ErrModeMismatch]);
//  3. f's epoch is the current one, or the previous one until the grace
//     period after RoomState.Since ends ([ErrStaleEpoch]); a newer epoch
//     fails with [ErrFutureEpoch];
//  4. the sender is a member ([ErrNotMember]);
//  5. the signature verifies ([ErrBadSignature]);
//  6. the sequence number is not a replay ([ErrReplay]);
//  7. the payload decrypts with the room key of f's epoch ([ErrDecrypt]).
//
// Only an accepted frame consumes its sequence number, so a frame that
// fails for want of a key (a KeyRing error) can be retried.
func (r *Receiver) Accept(room string, f Frame, now time.Time) (Received, error) {
	if err := f.validate(); err != nil {
		return Received{}, fmt.Errorf("accept frame: %w", err)
	}
	if f.Room != room {
		return Received{}, fmt.Errorf("accept frame: %w: frame for %s arrived on %s", ErrWrongRoom, quote(f.Room), quote(room))
	}
	st, err := r.keys.RoomState(room)
	if err != nil {
		return Received{}, fmt.Errorf("accept frame: room %s: %w", room, err)
	}
	if f.Clear != st.Cleartext {
		if st.Cleartext {
			return Received{}, fmt.Errorf("accept frame: sealed frame in cleartext room %s: %w", room, ErrModeMismatch)
		}
		return Received{}, fmt.Errorf("accept frame: cleartext frame in encrypted room %s: %w", room, ErrModeMismatch)
	}
	if err := r.checkEpoch(f.Epoch, st, now); err != nil {
		return Received{}, fmt.Errorf("accept frame: room %s: %w", room, err)
	}
	if !r.keys.IsMember(room, f.Sender) {
		return Received{}, fmt.Errorf("accept frame: %w: %s in room %s", ErrNotMember, f.Sender, room)
	}
	msg := f.signedMessage()
	if err := f.verify(msg); err != nil {
		return Received{}, fmt.Errorf("accept frame: %w", err)
	}
	key := windowKey{room: room, epoch: f.Epoch, sender: f.Sender}
	if err := r.replay.check(key, f.Seq, false); err != nil {
		return Received{}, fmt.Errorf("accept frame: %w", err)
	}

	payload := f.CT
	if !f.Clear {
		roomKey, err := r.keys.RoomKey(room, f.Epoch)
		if err != nil {
			return Received{}, fmt.Errorf("accept frame: room key of room %s epoch %d: %w", room, f.Epoch, err)
		}
		if payload, err = f.decrypt(roomKey); err != nil {
			return Received{}, fmt.Errorf("accept frame: %w", err)
		}
	}
	// Record the sequence number only now, atomically: of two copies of a
	// frame accepted concurrently, one fails here.
	if err := r.replay.check(key, f.Seq, true); err != nil {
		if !f.Clear {
			clear(payload)
		}
		return Received{}, fmt.Errorf("accept frame: %w", err)
	}
	return Received{Frame: f, ID: messageID(msg), Payload: payload}, nil
}

// checkEpoch applies the epoch rules of Accept.
func (r *Receiver) checkEpoch(epoch uint64, st RoomState, now time.Time) error {
	switch {
	case epoch == st.Epoch:
		return nil
	case epoch > st.Epoch:
		return fmt.Errorf("%w: frame of epoch %d, current %d", ErrFutureEpoch, epoch, st.Epoch)
	case epoch != previousEpoch(st):
		return fmt.Errorf("%w: frame of epoch %d, current %d", ErrStaleEpoch, epoch, st.Epoch)
	case !now.Before(st.Since.Add(r.grace)):
		return fmt.Errorf("%w: frame of previous epoch %d after the grace period of %s", ErrStaleEpoch, epoch, r.grace)
	}
	return nil
}

// previousEpoch is the epoch whose frames the grace period covers.
func previousEpoch(st RoomState) uint64 {
	if st.Previous != 0 && st.Previous < st.Epoch {
		return st.Previous
	}
	return st.Epoch - 1
}
