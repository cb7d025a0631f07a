package e2e

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"sync"
	"time"
)

// DefaultGrace is how long after a rekey a Receiver still accepts frames of
// the previous epoch, unless configured otherwise.
const DefaultGrace = 5 * time.Minute

// DefaultMaxClockSkew is how far in the future of the receiver's clock a
// frame's timestamp may be, unless configured otherwise: the clock-skew
// window of signed control-plane requests.
const DefaultMaxClockSkew = 2 * time.Minute

// DefaultMaxFrameAge is how old a frame's timestamp may be, unless
// configured otherwise: the grace period (a frame of the previous epoch
// may still be in flight, held in a publisher's reconnect buffer, that
// long after a rekey) plus the clock-skew allowance (the sender's clock
// may be that far behind the receiver's).
const DefaultMaxFrameAge = DefaultGrace + DefaultMaxClockSkew

// NoMaxFrameAge, as ReceiverConfig.MaxFrameAge, turns the age check off:
// only for a reader of durable history, which reads old frames on purpose
// and must detect replays itself (by the stream's sequence numbers).
const NoMaxFrameAge time.Duration = -1

// KeyRing is what a [Receiver] needs to know about rooms, supplied by the
// caller (the client keeps it in step with the control plane). Its methods
// must be safe for concurrent use.
type KeyRing interface {
	// RoomState returns the mode, current epoch and owner of room. An
	// error (an unknown room, say) makes the Receiver drop the frame with
	// that error.
	RoomState(room string) (RoomState, error)
	// RoomKey returns the room key of room at epoch. The Receiver neither
	// keeps nor modifies it. It is called only for frames whose signature
	// verified. The key ring must hand out only keys it has authenticated
	// (the owner's grant to this receiver verified, see VerifyGrant).
	RoomKey(room string, epoch uint64) ([]byte, error)
	// IsMember reports whether sender (a user public key) is a current
	// member of room. The Receiver asks only about cleartext rooms, whose
	// frames carry no key grant; in an encrypted room the sender's grant
	// is the proof.
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
	// Owner is the room owner's user public key, whose key grants admit
	// the senders of an encrypted room. The key ring must have
	// authenticated it (a room ID names its owner: subjects.CheckRoomOwner).
	// Required in an encrypted room.
	Owner string
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
	// NoReplayWindow turns the replay window off: for a reader of a
	// room's stored log, which drops a frame it already delivered by the
	// log's sequence and by the frame's ID. The window assumes that a
	// sender's frames arrive about in the order they were sealed, which
	// frames opened in parallel do not, nor do the frames of one identity
	// sending from several processes (each counts from its own clock),
	// read back from the log in the order stored.
	NoReplayWindow bool
	// MaxFrameAge is how old a frame's timestamp may be: the replay window
	// lives in memory, so this is what stops a frame captured before a
	// restart from being accepted again after it. 0 means
	// DefaultMaxFrameAge; otherwise it must be at least the grace period
	// plus MaxClockSkew. NoMaxFrameAge turns the check off (a history
	// reader).
	MaxFrameAge time.Duration
	// MaxClockSkew is how far in the future a frame's timestamp may be;
	// 0 means DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// MaxGrants bounds the verified key grants cached per (room, epoch,
	// sender); 0 means DefaultMaxTracked.
	MaxGrants int
	// EarlierEpochs accepts frames of any epoch up to the current one
	// whose room key the KeyRing supplies, without the grace period: for a
	// reader of a room's stored history, where a frame sealed before a
	// rekey is legitimately read long after it. The sender's key grant of
	// that epoch is still checked, so only a member the owner admitted to
	// that epoch can have sealed it; but a member removed since still
	// holds that epoch's key and grant, and can seal new frames under it
	// that whoever controls the log could store among the old ones.
	EarlierEpochs bool
}

// valid checks c; every error wraps ErrConfigValidation.
func (c *ReceiverConfig) valid() error {
	switch {
	case c.Keys == nil:
		return fmt.Errorf("%w: no key ring", ErrConfigValidation)
	case c.Grace < 0:
		return fmt.Errorf("%w: negative grace period %s", ErrConfigValidation, c.Grace)
	case c.MaxClockSkew < 0:
		return fmt.Errorf("%w: negative clock skew %s", ErrConfigValidation, c.MaxClockSkew)
	case c.MaxGrants < 0:
		return fmt.Errorf("%w: negative grant cache size %d", ErrConfigValidation, c.MaxGrants)
	case c.MaxFrameAge < 0 && c.MaxFrameAge != NoMaxFrameAge:
		return fmt.Errorf("%w: negative maximum frame age %s (NoMaxFrameAge turns the check off)", ErrConfigValidation, c.MaxFrameAge)
	}
	grace, skew := cmpOr(c.Grace, DefaultGrace), cmpOr(c.MaxClockSkew, DefaultMaxClockSkew)
	if c.MaxFrameAge > 0 && c.MaxFrameAge < grace+skew {
		return fmt.Errorf("%w: maximum frame age %s is less than the grace period %s plus the clock skew %s", ErrConfigValidation, c.MaxFrameAge, grace, skew)
	}
	return nil
}

// cmpOr returns d, or def when d is zero.
func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Receiver checks and opens the frames a subscriber receives, for any number
// of rooms. Make one with [NewReceiver]. It is safe for concurrent use if its
// KeyRing is.
type Receiver struct {
	keys    KeyRing
	grace   time.Duration
	maxAge  time.Duration // NoMaxFrameAge: no age check
	maxSkew time.Duration
	replay  *ReplayWindow // nil: no replay window (NoReplayWindow)
	grants  *grantCache
	earlier bool // accept any epoch up to the current one
}

// NewReceiver returns a receiver for cfg. The error matches
// [ErrConfigValidation].
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	if err := cfg.valid(); err != nil {
		return nil, fmt.Errorf("new receiver: %w", err)
	}
	r := &Receiver{
		keys:    cfg.Keys,
		grace:   cmpOr(cfg.Grace, DefaultGrace),
		maxAge:  cmpOr(cfg.MaxFrameAge, DefaultMaxFrameAge),
		maxSkew: cmpOr(cfg.MaxClockSkew, DefaultMaxClockSkew),
		replay:  cfg.Replay,
		grants:  newGrantCache(cfg.MaxGrants),
		earlier: cfg.EarlierEpochs,
	}
	switch {
	case cfg.NoReplayWindow:
		r.replay = nil
	case r.replay == nil:
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
// returns its payload. The checks run in this order, cheap ones first, the
// signature before anything that may cost a request or a key:
//
//  1. f is well formed ([ErrMalformedFrame], [ErrUnsupportedVersion]) and
//     names room ([ErrWrongRoom]);
//  2. f is cleartext exactly when the room is ([ErrModeMismatch]);
//  3. the signature verifies ([ErrBadSignature]);
//  4. f's epoch is the current one, or the previous one until the grace
//     period after RoomState.Since ends, or, with
//     ReceiverConfig.EarlierEpochs, any earlier one ([ErrStaleEpoch]);
//     a newer epoch
//     fails with [ErrFutureEpoch], only for a frame whose signature
//     verified, so that a forgery never makes the caller refresh a room;
//  5. f's timestamp is at most the maximum frame age old and at most the
//     clock-skew allowance ahead of now ([ErrFrameAge]);
//  6. the sequence number is not a replay ([ErrReplay]), unless the
//     replay window is off (ReceiverConfig.NoReplayWindow);
//  7. the sender may send: in an encrypted room, f carries the owner's key
//     grant to the sender for this room, epoch and the room key of that
//     epoch (an error matching both [ErrNotMember] and [ErrBadGrant]),
//     checked once per room, epoch and sender and then cached; in a
//     cleartext room, the KeyRing says the sender is a member
//     ([ErrNotMember]);
//  8. the payload decrypts with the room key of f's epoch ([ErrDecrypt]).
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
	msg := f.signedMessage()
	if err := f.verify(msg); err != nil {
		return Received{}, fmt.Errorf("accept frame: %w", err)
	}
	if err := r.checkEpoch(f.Epoch, st, now); err != nil {
		return Received{}, fmt.Errorf("accept frame: room %s: %w", room, err)
	}
	if err := r.checkFresh(&f, now); err != nil {
		return Received{}, fmt.Errorf("accept frame: %w", err)
	}
	key := windowKey{room: room, epoch: f.Epoch, sender: f.Sender}
	if r.replay != nil {
		if err := r.replay.check(key, f.Seq, false); err != nil {
			return Received{}, fmt.Errorf("accept frame: %w", err)
		}
	}

	payload := f.CT
	if f.Clear {
		if !r.keys.IsMember(room, f.Sender) {
			return Received{}, fmt.Errorf("accept frame: %w: %s in room %s", ErrNotMember, f.Sender, room)
		}
	} else {
		if len(f.Grant) == 0 {
			// Refused before any key is fetched.
			return Received{}, fmt.Errorf("accept frame: %w: %w: %s sent no key grant in room %s epoch %d", ErrNotMember, ErrBadGrant, f.Sender, room, f.Epoch)
		}
		roomKey, err := r.keys.RoomKey(room, f.Epoch)
		if err != nil {
			return Received{}, fmt.Errorf("accept frame: room key of room %s epoch %d: %w", room, f.Epoch, err)
		}
		if err := r.checkGrant(key, st.Owner, roomKey, f.Grant); err != nil {
			return Received{}, fmt.Errorf("accept frame: %w: %w", ErrNotMember, err)
		}
		if payload, err = f.decrypt(roomKey); err != nil {
			return Received{}, fmt.Errorf("accept frame: %w", err)
		}
	}
	// Record the sequence number only now, atomically: of two copies of a
	// frame accepted concurrently, one fails here.
	if r.replay == nil {
		return Received{Frame: f, ID: messageID(msg), Payload: payload}, nil
	}
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
	case r.earlier:
		return nil
	case epoch != previousEpoch(st):
		return fmt.Errorf("%w: frame of epoch %d, current %d", ErrStaleEpoch, epoch, st.Epoch)
	case !now.Before(st.Since.Add(r.grace)):
		return fmt.Errorf("%w: frame of previous epoch %d after the grace period of %s", ErrStaleEpoch, epoch, r.grace)
	}
	return nil
}

// checkFresh refuses a frame whose timestamp is older than the maximum
// frame age or further ahead than the clock-skew allowance. It is the one
// place frame times are checked, which a history reader turns off with
// NoMaxFrameAge.
//
// The replay window lives in memory: after a restart it is empty, and
// without this check a frame captured earlier would be accepted once more.
// With it, a captured frame can be replayed only within the maximum age,
// and only to a receiver that restarted (or evicted the sender's window)
// since it first saw the frame.
func (r *Receiver) checkFresh(f *Frame, now time.Time) error {
	if r.maxAge == NoMaxFrameAge {
		return nil
	}
	ts, nowMs := f.TS, now.UnixMilli()
	switch {
	case ts < nowMs-r.maxAge.Milliseconds():
		return fmt.Errorf("%w: frame from %s sealed %s ago, limit %s", ErrFrameAge, f.Sender, time.Duration(nowMs-ts)*time.Millisecond, r.maxAge)
	case ts > nowMs+r.maxSkew.Milliseconds():
		return fmt.Errorf("%w: frame from %s sealed %s in the future, limit %s", ErrFrameAge, f.Sender, time.Duration(ts-nowMs)*time.Millisecond, r.maxSkew)
	}
	return nil
}

// checkGrant verifies the key grant of a frame from k.sender in k.room at
// k.epoch, under owner and the room key of that epoch, unless the same
// grant was verified before for the same owner and key.
func (r *Receiver) checkGrant(k windowKey, owner string, roomKey, grant []byte) error {
	if owner == "" {
		return fmt.Errorf("%w: the owner of room %s is not known", ErrBadGrant, k.room)
	}
	commitment := KeyCommitment(roomKey)
	if r.grants.has(k, owner, commitment, grant) {
		return nil
	}
	ownerKey, err := ownerPublicKey(owner)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadGrant, err)
	}
	if err := verifyGrant(ownerKey, k.room, k.epoch, k.sender, commitment, grant); err != nil {
		return err
	}
	r.grants.add(k, owner, commitment, grant)
	return nil
}

// previousEpoch is the epoch whose frames the grace period covers.
func previousEpoch(st RoomState) uint64 {
	if st.Previous != 0 && st.Previous < st.Epoch {
		return st.Previous
	}
	return st.Epoch - 1
}

// grantCache remembers verified key grants per (room, epoch, sender), so
// that a sender's steady stream of frames costs one grant verification,
// not one per frame. It holds at most max entries and forgets an arbitrary
// one to make room: only grants that verified enter it, so its size is
// bounded by the senders the owners admitted, and a forgotten grant costs
// one verification more. It is safe for concurrent use.
type grantCache struct {
	mu      sync.Mutex
	max     int
	entries map[windowKey]grantEntry
}

// grantEntry is a verified grant and what it was verified against.
type grantEntry struct {
	owner      string
	commitment [CommitmentSize]byte
	grant      [ed25519.SignatureSize]byte
}

func newGrantCache(maxEntries int) *grantCache {
	if maxEntries <= 0 {
		maxEntries = DefaultMaxTracked
	}
	return &grantCache{max: maxEntries, entries: make(map[windowKey]grantEntry)}
}

// has reports whether grant was verified for k under owner and the key
// whose commitment is commitment.
func (c *grantCache) has(k windowKey, owner string, commitment [CommitmentSize]byte, grant []byte) bool {
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	return ok && e.owner == owner && e.commitment == commitment && bytes.Equal(e.grant[:], grant)
}

// add records a verified grant (GrantSize bytes).
func (c *grantCache) add(k windowKey, owner string, commitment [CommitmentSize]byte, grant []byte) {
	e := grantEntry{owner: owner, commitment: commitment}
	copy(e.grant[:], grant)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for old := range c.entries {
			delete(c.entries, old)
			break
		}
	}
	c.entries[k] = e
}

// len returns the number of cached grants.
func (c *grantCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
