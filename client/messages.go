package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

// Message is a verified (and, in an encrypted room, decrypted) message.
type Message struct {
	// ID is the message ID: a hash of the signed frame.
	ID     string
	Room   string
	Sender string
	// Type is e2e.TypeMsg or e2e.TypeReact.
	Type string
	// Thread is the thread's root message ID; ReplyTo the message this one
	// answers or reacts to. Empty when unset.
	Thread  string
	ReplyTo string
	Time    time.Time
	Epoch   uint64
	Data    []byte
}

// Publish sends data to a room and returns the message ID.
func (c *Conn) Publish(ctx context.Context, roomID string, data []byte) (string, error) {
	return c.send(ctx, roomID, e2e.Message{Type: e2e.TypeMsg, Payload: data})
}

// PublishReply answers message parentID in its thread.
func (c *Conn) PublishReply(ctx context.Context, roomID, parentID string, data []byte) (string, error) {
	return c.send(ctx, roomID, e2e.Message{Type: e2e.TypeMsg, Thread: parentID, ReplyTo: parentID, Payload: data})
}

// React reacts to message targetID with emoji (sealed like any payload).
func (c *Conn) React(ctx context.Context, roomID, targetID, emoji string) (string, error) {
	return c.send(ctx, roomID, e2e.Message{Type: e2e.TypeReact, ReplyTo: targetID, Payload: []byte(emoji)})
}

func (c *Conn) send(ctx context.Context, roomID string, m e2e.Message) (string, error) {
	subject, err := subjects.Room(roomID)
	if err != nil {
		return "", fmt.Errorf("publish: %w", err)
	}
	rc, sealer, err := c.keys.sealer(ctx, roomID)
	if err != nil {
		return "", fmt.Errorf("publish to room %s: %w", roomID, err)
	}
	// Sequence numbers must reach the bus in order for receivers' replay
	// windows: hold the room's lock across Seal and Publish.
	rc.publishMu.Lock()
	defer rc.publishMu.Unlock()
	f, wire, err := sealer.Seal(m, time.Now())
	if err != nil {
		return "", fmt.Errorf("publish to room %s: %w", roomID, err)
	}
	if err := c.nc.Publish(subject, wire); err != nil {
		return "", fmt.Errorf("publish to room %s: %w", roomID, err)
	}
	return f.ID(), nil
}

// Subscription is a room subscription; Unsubscribe ends it.
type Subscription struct {
	sub *nats.Subscription

	mu     sync.Mutex
	closed bool
	work   chan job
	queue  chan *pending
	wg     sync.WaitGroup
}

// job is one frame to verify and open; pending its result, in arrival
// order.
type job struct {
	wire []byte
	p    *pending
}

type pending struct {
	done chan received
}

type received struct {
	m   Message
	err error
}

// pipelineDepth bounds frames between arrival and delivery.
const pipelineDepth = 1024

// Unsubscribe stops delivery and waits for the subscription's goroutines.
func (s *Subscription) Unsubscribe() error {
	err := s.sub.Unsubscribe()
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.work)
		close(s.queue)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// Subscribe delivers the room's messages to handler: only frames that
// verify (signature, sender, epoch, age, replay) and decrypt. In an
// encrypted room a sender is admitted by the owner's key grant its frame
// carries, so checking a new sender costs no request; in a cleartext room
// the service is asked about that one sender (see Conn.Members).
// Rejected frames go to onReject when set (for logging), never to
// handler. Frames are verified and opened in parallel (signature checks
// dominate the cost) and delivered one at a time, in arrival order. A
// frame of an epoch this client does not know yet waits for the room's
// next refresh (at most one a second) without holding up the others'
// checks. The subscription survives reconnects (nats.go restores it, e.g.
// after a permission refresh).
//
// Subscribe fetches the room's state, checks it (ErrUntrustedRoom,
// ErrEpochRollback) and, in an encrypted room, the current room key and
// the owner's grant of it (ErrUnauthenticatedKey), so that a key the owner
// did not give is refused before anything is read with it.
func (c *Conn) Subscribe(ctx context.Context, roomID string, handler func(Message), onReject func(error)) (*Subscription, error) {
	subject, err := subjects.Room(roomID)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	rc, err := c.keys.room(ctx, roomID, true)
	if err != nil {
		return nil, fmt.Errorf("subscribe to room %s: %w", roomID, err)
	}
	if info := c.keys.info(rc); info.Mode == subjects.ModeE2E && c.encKey != nil {
		if _, err := c.keys.roomKey(ctx, roomID, info.Epoch); err != nil {
			return nil, fmt.Errorf("subscribe to room %s: %w", roomID, err)
		}
	}
	s := &Subscription{work: make(chan job, pipelineDepth), queue: make(chan *pending, pipelineDepth)}
	for range runtime.GOMAXPROCS(0) {
		s.wg.Go(func() {
			for j := range s.work {
				arrived := time.Now()
				m, err := c.receive(roomID, j.wire, arrived)
				if isRetryable(err) {
					// Wait for the room's refresh in a goroutine of the
					// subscription's own, so that a flood of such frames
					// holds up no worker; their number is bounded by the
					// pipeline.
					s.wg.Go(func() { j.p.done <- c.receiveAfterRefresh(roomID, j.wire, arrived, err) })
					continue
				}
				j.p.done <- received{m, err}
			}
		})
	}
	s.wg.Go(func() {
		for p := range s.queue {
			r := <-p.done
			if r.err != nil {
				if onReject != nil {
					onReject(r.err)
				}
				continue
			}
			handler(r.m)
		}
	})
	s.sub, err = c.nc.Subscribe(subject, func(msg *nats.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return
		}
		p := &pending{done: make(chan received, 1)}
		s.queue <- p
		s.work <- job{wire: msg.Data, p: p}
	})
	if err != nil {
		s.mu.Lock()
		s.closed = true
		close(s.work)
		close(s.queue)
		s.mu.Unlock()
		s.wg.Wait()
		return nil, fmt.Errorf("subscribe to room %s: %w", roomID, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	if err := c.confirmSubscription(ctx, subject); err != nil {
		_ = s.Unsubscribe()
		return nil, fmt.Errorf("subscribe to room %s: %w", roomID, err)
	}
	return s, nil
}

// confirmSubscription returns once the server has accepted the
// subscription to subject. A disconnect meanwhile is not a failure:
// nats.go re-sends subscriptions when it reconnects. A refusal right after
// an invite is expected (this connection's permissions predate the room,
// and the bus reconnects it with the room within moments): it waits for
// that one reconnect, bounded by ctx and PermissionRefreshWait, and
// checks again; a second refusal is ErrForbidden.
func (c *Conn) confirmSubscription(ctx context.Context, subject string) error {
	for waited := false; ; waited = true {
		refreshed := c.reconnects.wait()
		if err := c.nc.FlushWithContext(ctx); err != nil && (c.nc.IsClosed() || ctx.Err() != nil) {
			return err
		}
		if !c.refused(subject) {
			return nil
		}
		if waited {
			return fmt.Errorf("the server refused the subscription (are you a member?): %w", ErrForbidden)
		}
		select {
		case <-refreshed:
		case <-time.After(PermissionRefreshWait):
			return fmt.Errorf("the server refused the subscription and no permission refresh followed: %w", ErrForbidden)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// refused reports whether the connection's last error is the server's
// refusal of a subscription to subject (nats.go keeps the last one; a
// reconnect clears it).
func (c *Conn) refused(subject string) bool {
	err := c.nc.LastError()
	return errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), strconv.Quote(subject))
}

// receive verifies and opens a frame that arrived at arrived.
func (c *Conn) receive(roomID string, wire []byte, arrived time.Time) (Message, error) {
	r, err := c.receiver.Receive(roomID, wire, arrived)
	if err != nil {
		return Message{}, err
	}
	f := r.Frame
	return Message{
		ID: r.ID, Room: roomID, Sender: f.Sender, Type: f.T, Thread: f.Thr, ReplyTo: f.Re,
		Time: time.UnixMilli(f.TS), Epoch: f.Epoch, Data: r.Payload,
	}, nil
}

// receiveAfterRefresh handles a frame that failed with firstErr, a newer
// epoch than this client knows (its signature verified): it waits for a
// refresh of the room that started after the frame arrived, shared with
// every other frame waiting for one and at most one per
// roomRefreshInterval, and tries the frame once more.
func (c *Conn) receiveAfterRefresh(roomID string, wire []byte, arrived time.Time, firstErr error) received {
	ctx, cancel := context.WithTimeout(context.Background(), roomRefreshInterval+keyringTimeout)
	defer cancel()
	if err := c.keys.refresh(ctx, roomID, arrived, true); err != nil {
		return received{err: errors.Join(firstErr, err)}
	}
	m, err := c.receive(roomID, wire, time.Now())
	return received{m, err}
}
