package e2e

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// SealerConfig configures a [Sealer].
type SealerConfig struct {
	// Identity is the sender, who signs every frame. Required.
	Identity *identity.Identity
	// Room is the room ID. Required.
	Room string
	// Epoch is the key epoch of RoomKey: at least 1 in an encrypted room,
	// 0 in a cleartext one.
	Epoch uint64
	// RoomKey is the room key of Epoch, RoomKeySize bytes; nil in a
	// cleartext room. NewSealer keeps only the sender's subkey derived from
	// it; the caller still owns RoomKey.
	RoomKey []byte
	// Grant is, in an encrypted room, the room owner's key grant to
	// Identity for Room, Epoch and RoomKey (GrantSize bytes, see
	// SignGrant), which every frame carries so that receivers check the
	// sender without asking anyone. Required in an encrypted room, empty in
	// a cleartext one. NewSealer does not verify it (it does not know the
	// owner); receivers do.
	Grant []byte
	// Cleartext makes the sealer sign frames without sealing them, for a
	// cleartext room (Epoch 0, no RoomKey, no Grant).
	Cleartext bool
	// Rand is the source of nonces; nil means crypto/rand. Tests set it to
	// get reproducible frames.
	Rand io.Reader
}

// valid checks c; every error wraps ErrConfigValidation.
func (c *SealerConfig) valid() error {
	if c.Identity == nil {
		return fmt.Errorf("%w: no identity", ErrConfigValidation)
	}
	if err := subjects.ValidateRoomID(c.Room); err != nil {
		return fmt.Errorf("%w: %w", ErrConfigValidation, err)
	}
	if c.Cleartext {
		if c.Epoch != 0 || c.RoomKey != nil || c.Grant != nil {
			return fmt.Errorf("%w: a cleartext room has epoch 0, no room key and no key grant", ErrConfigValidation)
		}
		return nil
	}
	if len(c.Grant) != GrantSize {
		return fmt.Errorf("%w: %w: key grant of %d bytes, want %d", ErrConfigValidation, ErrBadGrant, len(c.Grant), GrantSize)
	}
	if c.Epoch == 0 {
		return fmt.Errorf("%w: an encrypted room's epoch is at least 1", ErrConfigValidation)
	}
	if len(c.RoomKey) != RoomKeySize {
		return fmt.Errorf("%w: %w: %d bytes, want %d", ErrConfigValidation, ErrInvalidRoomKey, len(c.RoomKey), RoomKeySize)
	}
	return nil
}

// Sealer makes the frames of one sender in one room and epoch. It caches the
// sender's subkey and assigns sequence numbers. Make one with [NewSealer],
// and a new one after each rekey. It is safe for concurrent use; to keep the
// replay windows of receivers happy, publish frames in the order Seal
// returns them (for example, hold a lock across Seal and publish).
type Sealer struct {
	id     *identity.Identity
	sender string
	room   string
	epoch  uint64
	clear  bool
	aead   cipher.AEAD // nil in a cleartext room
	grant  []byte      // nil in a cleartext room

	randMu sync.Mutex // guards rand, which need not be safe for concurrent use
	rand   io.Reader  // nil means crypto/rand

	seq atomic.Uint64 // the last sequence number used
}

// NewSealer returns a sealer for cfg. The error matches
// [ErrConfigValidation].
func NewSealer(cfg SealerConfig) (*Sealer, error) {
	if err := cfg.valid(); err != nil {
		return nil, fmt.Errorf("new sealer: %w", err)
	}
	s := &Sealer{
		id:     cfg.Identity,
		sender: cfg.Identity.PublicKey(),
		room:   cfg.Room,
		epoch:  cfg.Epoch,
		clear:  cfg.Cleartext,
		rand:   cfg.Rand,
	}
	if !s.clear {
		a, err := deriveAEAD(cfg.RoomKey, s.room, s.epoch, s.sender)
		if err != nil {
			return nil, fmt.Errorf("new sealer: %w", err)
		}
		s.aead = a
		s.grant = bytes.Clone(cfg.Grant)
	}
	return s, nil
}

// Message is what a sender puts in a frame.
type Message struct {
	// Type is the frame type; empty means TypeMsg.
	Type string
	// Thread is the ID of the thread's root message, if any.
	Thread string
	// ReplyTo is the ID of the message this one replies or reacts to, if
	// any; a TypeReact message requires it.
	ReplyTo string
	// Payload is the content, at most MaxPayloadSize bytes.
	Payload []byte
}

// nextSeq returns the next sequence number. The first frame of a sealer
// takes the time in microseconds since the Unix epoch, so that a sender that
// restarts continues above what receivers have seen; later frames count up
// by one, so that the receivers' replay windows (ReplayWindowSize numbers
// wide) tolerate reordering by that many frames, not by a millisecond.
func (s *Sealer) nextSeq(now time.Time) uint64 {
	for {
		last := s.seq.Load()
		next := last + 1
		if last == 0 {
			next = uint64(max(now.UnixMicro(), 1))
		}
		if s.seq.CompareAndSwap(last, next) {
			return next
		}
	}
}

// Seal makes the frame of m, stamped with now: sealed and signed in an
// encrypted room, signed in a cleartext one. It returns the frame and its
// wire form; the frame's ID is f.ID(). The error matches [ErrFrameTooLarge]
// or [ErrMalformedFrame] for a message out of bounds.
func (s *Sealer) Seal(m Message, now time.Time) (Frame, []byte, error) {
	if len(m.Payload) > MaxPayloadSize {
		return Frame{}, nil, fmt.Errorf("seal frame: payload of %d bytes, limit %d: %w", len(m.Payload), MaxPayloadSize, ErrFrameTooLarge)
	}
	f := Frame{
		V:      Version,
		T:      m.Type,
		Room:   s.room,
		Epoch:  s.epoch,
		Clear:  s.clear,
		Sender: s.sender,
		TS:     now.UnixMilli(),
		Thr:    m.Thread,
		Re:     m.ReplyTo,
	}
	if f.T == "" {
		f.T = TypeMsg
	}
	if err := f.validateHeader(); err != nil {
		return Frame{}, nil, fmt.Errorf("seal frame: %w", err)
	}
	f.Seq = s.nextSeq(now)

	if s.clear {
		f.CT = append([]byte{}, m.Payload...)
	} else {
		f.Nonce = make([]byte, NonceSize)
		if err := s.readNonce(f.Nonce); err != nil {
			return Frame{}, nil, fmt.Errorf("seal frame: %w", err)
		}
		f.CT = s.aead.Seal(nil, f.Nonce, m.Payload, f.header())
		f.Grant = bytes.Clone(s.grant)
	}

	sig, err := s.id.Sign(f.signedMessage())
	if err != nil {
		return Frame{}, nil, fmt.Errorf("seal frame: %w", err)
	}
	f.Sig = sig
	wire, err := f.marshal()
	if err != nil {
		return Frame{}, nil, fmt.Errorf("seal frame: %w", err)
	}
	return f, wire, nil
}

// readNonce fills nonce from the sealer's randomness.
func (s *Sealer) readNonce(nonce []byte) error {
	if s.rand == nil {
		// crypto/rand.Read never fails and is safe for concurrent use.
		_, _ = rand.Read(nonce)
		return nil
	}
	s.randMu.Lock()
	defer s.randMu.Unlock()
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return fmt.Errorf("read nonce: %w", err)
	}
	return nil
}

// Room returns the sealer's room ID.
func (s *Sealer) Room() string { return s.room }

// Epoch returns the sealer's epoch.
func (s *Sealer) Epoch() uint64 { return s.epoch }
