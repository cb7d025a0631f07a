package kvstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/subjects"
)

// The room log's chain. Every frame of a room is stored with the
// sequence of the room's previous frame (subjects.HeaderPrev), and the
// append is conditional on it: JetStream stores the frame only if the
// room's last message is still that one
// (Nats-Expected-Last-Subject-Sequence). So whoever appends, from however
// many goroutines, stores and nodes, a room's frames form one chain with
// no fork and no gap but what retention removed: a member that holds Prev
// and receives Seq knows it missed nothing.
//
// One Store appends to a room one frame at a time (a per-room lock) and
// remembers the room's last sequence, so that its appends need no read.
// Another store's append moves the room on: ours is refused with the
// actual last sequence (wrong last sequence), which it takes and retries
// with, up to maxAppendAttempts times.

// LogAppend is the outcome of AppendFrame.
type LogAppend struct {
	// Seq is the frame's sequence in the room log.
	Seq uint64
	// Prev is the sequence of the room's frame before it (0: none
	// retained); 0 for a duplicate.
	Prev uint64
	// Duplicate is true when the log already held a frame with this ID
	// (a retried send, within HistoryDuplicateWindow): Seq is the first
	// copy's, and nothing was stored.
	Duplicate bool
}

const (
	// maxAppendAttempts bounds the conditional publishes of one append
	// that other appenders keep overtaking.
	maxAppendAttempts = 32
	// maxChains bounds the rooms whose last sequence a Store remembers;
	// idle ones are forgotten beyond it (and read again when needed).
	maxChains = 4096
	// maxFrameIDLen bounds a frame's ID (its Nats-Msg-Id).
	maxFrameIDLen = 128
)

// JetStream's error codes of a conditional publish that lost a race:
// the subject's last sequence is another (with it in the description),
// another conditional publish to the subject is in flight (clustered),
// or a publish with the same message ID is in flight (clustered).
const (
	jsErrWrongLastSequence        jetstream.ErrorCode = 10071
	jsErrWrongLastSequenceInFlux  jetstream.ErrorCode = 10164
	jsErrDuplicateMessageInFlight jetstream.ErrorCode = 10158
)

// wrongLastSeqPrefix starts the description of jsErrWrongLastSequence,
// which ends with the subject's actual last sequence.
const wrongLastSeqPrefix = "wrong last sequence: "

// AppendFrame stores frame, whose ID is frameID, as the next frame of
// the room's log (StreamRoomLog, at subjects.Room(roomID)), and returns
// its sequence and the previous frame's. A frame ID the log holds already
// (within HistoryDuplicateWindow) is not stored again: the first copy's
// sequence is returned with Duplicate. (The ID is the frame's within the
// room: another room's frame with the same ID is another frame.) maxAge, when positive and shorter
// than the deployment's (HistoryMaxAge), is the room's own: the frame is
// removed after it (a per-message TTL, at least MinFrameMaxAge).
//
// Any number of goroutines, stores and nodes may append to one room at
// once: the chain stays one (see above). A bad room ID, frame ID or
// maxAge is ErrInvalid; any other error means the frame may not be
// stored: the caller retries with the same frame ID, which stores it
// once.
func (s *Store) AppendFrame(ctx context.Context, roomID, frameID string, frame []byte, maxAge time.Duration) (LogAppend, error) {
	if err := validRoomID(roomID); err != nil {
		return LogAppend{}, err
	}
	subject, err := subjects.Room(roomID)
	if err != nil {
		return LogAppend{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := validFrameID(frameID); err != nil {
		return LogAppend{}, err
	}
	if maxAge < 0 || (maxAge > 0 && maxAge < MinFrameMaxAge) {
		return LogAppend{}, fmt.Errorf("%w: a room's maximum age of frames must be at least %s, or 0 for the deployment's, got %s", ErrInvalid, MinFrameMaxAge, maxAge)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()

	ch := s.chains.acquire(roomID)
	defer s.chains.release(ch)
	for attempt := 1; ; attempt++ {
		if !ch.known {
			last, err := s.lastSeqOf(ctx, StreamRoomLog, subject)
			if err != nil {
				return LogAppend{}, fmt.Errorf("append frame to room %s: %w", roomID, err)
			}
			ch.last, ch.known = last, true
		}
		prev := ch.last
		msg := nats.NewMsg(subject)
		msg.Data = frame
		msg.Header.Set(subjects.HeaderPrev, strconv.FormatUint(prev, 10))
		opts := []jetstream.PublishOpt{
			jetstream.WithMsgID(logMsgID(roomID, frameID)),
			jetstream.WithExpectStream(StreamRoomLog),
			jetstream.WithExpectLastSequencePerSubject(prev),
		}
		if maxAge > 0 && maxAge < s.historyMaxAge {
			opts = append(opts, jetstream.WithMsgTTL(maxAge))
		}
		ack, err := s.js.PublishMsg(ctx, msg, opts...)
		if err == nil {
			if ack.Duplicate {
				return LogAppend{Seq: ack.Sequence, Duplicate: true}, nil
			}
			ch.last = ack.Sequence
			return LogAppend{Seq: ack.Sequence, Prev: prev}, nil
		}
		ch.known = false
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || attempt == maxAppendAttempts {
			return LogAppend{}, fmt.Errorf("append frame to room %s (attempt %d): %w", roomID, attempt, err)
		}
		switch apiErr.ErrorCode {
		case jsErrWrongLastSequence:
			// Another append moved the room on: take its last sequence
			// (and, after losing a few times in a row, let the other
			// appender go first).
			if rest, ok := strings.CutPrefix(apiErr.Description, wrongLastSeqPrefix); ok {
				if last, perr := strconv.ParseUint(rest, 10, 64); perr == nil {
					ch.last, ch.known = last, true
				}
			}
			if attempt > 2 {
				if err := sleepCtx(ctx, appendBackoff(attempt-2)); err != nil {
					return LogAppend{}, fmt.Errorf("append frame to room %s: %w", roomID, err)
				}
			}
		case jsErrWrongLastSequenceInFlux, jsErrDuplicateMessageInFlight:
			// Another append to the room is in flight: wait for it.
			if err := sleepCtx(ctx, appendBackoff(attempt)); err != nil {
				return LogAppend{}, fmt.Errorf("append frame to room %s: %w", roomID, err)
			}
		default:
			return LogAppend{}, fmt.Errorf("append frame to room %s: %w", roomID, err)
		}
	}
}

// logMsgID is the Nats-Msg-Id of a room's frame: the frame's ID within
// the room, since JetStream deduplicates stream-wide. A frame of another
// room with the same ID (a collision, or a member copying an ID it saw)
// is never taken for a retry of this one.
func logMsgID(roomID, frameID string) string { return roomID + "/" + frameID }

// validFrameID checks a frame's ID, which becomes a message header: not
// empty, at most maxFrameIDLen bytes of printable ASCII without spaces.
func validFrameID(id string) error {
	if id == "" || len(id) > maxFrameIDLen {
		return fmt.Errorf("%w: a frame ID must be 1..%d bytes, got %d", ErrInvalid, maxFrameIDLen, len(id))
	}
	for i := range len(id) {
		if c := id[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("%w: a frame ID must be printable ASCII without spaces", ErrInvalid)
		}
	}
	return nil
}

// appendBackoff is the wait before attempt+1 of an append that found
// another in flight: a few milliseconds, growing, with jitter so that
// two appenders do not meet again.
func appendBackoff(attempt int) time.Duration {
	base := time.Duration(min(attempt, 8)) * time.Millisecond
	return base + rand.N(base+time.Millisecond)
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lastSeqOf returns the sequence of subject's last message in stream,
// read from the leader; 0 when there is none.
func (s *Store) lastSeqOf(ctx context.Context, stream, subject string) (uint64, error) {
	m, err := lastFromLeader(ctx, s.js.Conn(), stream, subject)
	if errors.Is(err, errNoMessage) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.seq, nil
}

// chainCache remembers the last sequence of the rooms a Store appends to,
// and serializes its appends to each room. It holds at most max idle
// rooms.
type chainCache struct {
	mu    sync.Mutex
	rooms map[string]*chain
	max   int
}

// chain is one room's: its lock, held by one append at a time, and what
// that append knows.
type chain struct {
	room string
	mu   sync.Mutex
	// last is the room's last sequence as last seen, when known.
	last  uint64
	known bool
	// users counts the appends holding or waiting for mu (guarded by
	// chainCache.mu): a chain in use is never forgotten.
	users int
}

func newChainCache(max int) *chainCache {
	return &chainCache{rooms: map[string]*chain{}, max: max}
}

// acquire returns room's chain, locked.
func (c *chainCache) acquire(room string) *chain {
	c.mu.Lock()
	ch := c.rooms[room]
	if ch == nil {
		if len(c.rooms) >= c.max {
			c.evict()
		}
		ch = &chain{room: room}
		c.rooms[room] = ch
	}
	ch.users++
	c.mu.Unlock()
	ch.mu.Lock()
	return ch
}

// release unlocks a chain that acquire returned.
func (c *chainCache) release(ch *chain) {
	ch.mu.Unlock()
	c.mu.Lock()
	ch.users--
	c.mu.Unlock()
}

// evict forgets idle rooms until a quarter of the cache is free (fewer
// when more rooms are in use). c.mu is held.
func (c *chainCache) evict() {
	target := c.max * 3 / 4
	for room, ch := range c.rooms {
		if len(c.rooms) <= target {
			return
		}
		if ch.users == 0 {
			delete(c.rooms, room)
		}
	}
}

// size returns the number of rooms remembered (tests).
func (c *chainCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rooms)
}
