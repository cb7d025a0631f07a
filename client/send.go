package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

// Sent is the outcome of a send.
type Sent struct {
	// ID is the message ID (the frame's ID, e2e.Frame.ID).
	ID string
	// Seq is the frame's sequence in the room log: 0 when the room keeps
	// no history, or when the send was not acknowledged (NoAck).
	Seq uint64
	// Duplicate is true when the log already held the frame (a retry whose
	// first attempt was stored): Seq is the first copy's.
	Duplicate bool
}

// SendOption adjusts one send (Publish, PublishReply, React).
type SendOption func(*sendOptions)

type sendOptions struct {
	noAck bool
}

// NoAck sends fire-and-forget: the frame is published once and the call
// returns without waiting for the routing service, so Sent holds only the
// ID. A frame the service refuses (not a member, too large, over the rate)
// or cannot store is lost without a word; use it where that is fine
// (telemetry, typing notices), and the acknowledged default elsewhere.
func NoAck() SendOption { return func(o *sendOptions) { o.noAck = true } }

// Publish sends data to a room. By default the send is acknowledged: it
// returns once the routing service stored the frame (or, in a room that
// keeps no history, delivered it), with its room-log sequence. A refusal
// comes back as an *APIError matching ErrForbidden (not a member),
// ErrNotFound (no such room), ErrTooLarge, ErrTooManyRequests or
// ErrBadRequest; a service that cannot store it now (ErrUnavailable, or no
// routing service at all) is retried with the same frame until ctx's
// deadline (DefaultRequestTimeout when it has none): the service stores a
// frame once however many times it is sent, and a retry whose first
// attempt was stored answers Sent.Duplicate.
func (c *Conn) Publish(ctx context.Context, roomID string, data []byte, opts ...SendOption) (Sent, error) {
	return c.send(ctx, roomID, e2e.Message{Type: e2e.TypeMsg, Payload: data}, opts)
}

// PublishReply answers message parentID in its thread, as Publish sends.
func (c *Conn) PublishReply(ctx context.Context, roomID, parentID string, data []byte, opts ...SendOption) (Sent, error) {
	return c.send(ctx, roomID, e2e.Message{Type: e2e.TypeMsg, Thread: parentID, ReplyTo: parentID, Payload: data}, opts)
}

// React reacts to message targetID with emoji (sealed like any payload),
// as Publish sends.
func (c *Conn) React(ctx context.Context, roomID, targetID, emoji string, opts ...SendOption) (Sent, error) {
	return c.send(ctx, roomID, e2e.Message{Type: e2e.TypeReact, ReplyTo: targetID, Payload: []byte(emoji)}, opts)
}

// sendRetryMin and sendRetryMax bound the pause between attempts of a send
// the routing service could not take (503, no responders).
const (
	sendRetryMin = 50 * time.Millisecond
	sendRetryMax = time.Second
)

func (c *Conn) send(ctx context.Context, roomID string, m e2e.Message, opts []SendOption) (Sent, error) {
	var o sendOptions
	for _, opt := range opts {
		opt(&o)
	}
	subject, err := subjects.Send(roomID, c.id.PublicKey())
	if err != nil {
		return Sent{}, fmt.Errorf("publish: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	rc, sealer, err := c.keys.sealer(ctx, roomID)
	if err != nil {
		return Sent{}, fmt.Errorf("publish to room %s: %w", roomID, err)
	}
	if err := ctx.Err(); err != nil {
		// Nothing is sent once the caller gave up.
		return Sent{}, fmt.Errorf("publish to room %s: %w", roomID, err)
	}
	var reply string
	var acks <-chan *nats.Msg
	if !o.noAck {
		var done func()
		if reply, acks, done, err = c.acks.register(); err != nil {
			return Sent{}, fmt.Errorf("publish to room %s: %w", roomID, err)
		}
		defer done()
	}
	// Sequence numbers must reach the bus in order for receivers' replay
	// windows: hold the room's lock across Seal and the first send (not
	// across the wait for the acknowledgement, so that concurrent sends
	// to one room overlap).
	rc.publishMu.Lock()
	f, wire, err := sealer.Seal(m, time.Now())
	if err == nil {
		err = c.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: wire})
	}
	rc.publishMu.Unlock()
	if err != nil {
		return Sent{}, fmt.Errorf("publish to room %s: %w", roomID, err)
	}
	id := f.ID()
	if o.noAck {
		return Sent{ID: id}, nil
	}
	sent, err := c.awaitAck(ctx, subject, reply, acks, wire, id)
	if err != nil {
		return Sent{}, fmt.Errorf("publish to room %s: %w", roomID, err)
	}
	return sent, nil
}

// awaitAck waits for the routing service's answer to the send of wire
// (frame id) to subject, whose replies arrive on acks, and sends the same
// bytes again when the service could not take it (503 or no responders,
// after a pause), when it was over the rate (429, after the service's
// hint) or when the connection came back and no answer followed within
// reconnectGrace: the service stores a frame once. It gives up at ctx's
// deadline.
func (c *Conn) awaitAck(ctx context.Context, subject, reply string, acks <-chan *nats.Msg, wire []byte, id string) (Sent, error) {
	pause := sendRetryMin
	var last error
	for limited := 0; ; {
		back := c.reconnects.wait()
		var msg *nats.Msg
		select {
		case msg = <-acks:
		case <-back:
			if !sleepCtx(ctx, reconnectGrace) {
				return Sent{}, errors.Join(ctx.Err(), last)
			}
			select {
			case msg = <-acks:
			default:
				if err := c.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: wire}); err != nil && !errors.Is(err, nats.ErrConnectionReconnecting) {
					return Sent{}, err
				}
				continue
			}
		case <-ctx.Done():
			return Sent{}, errors.Join(ctx.Err(), last)
		}
		sent, err := parseAck(subject, msg, id)
		if err == nil {
			return sent, nil
		}
		var api *APIError
		if !errors.As(err, &api) {
			return Sent{}, err
		}
		var wait time.Duration
		switch api.Code {
		case subjects.CodeUnavailable:
			wait, pause = pause, min(2*pause, sendRetryMax)
		case subjects.CodeTooManyRequests:
			if limited == maxRateLimitedRetries {
				return Sent{}, err
			}
			limited++
			wait = max(api.RetryAfter, time.Millisecond)
		default:
			return Sent{}, err
		}
		last = err
		if !waitRetry(ctx, wait) {
			return Sent{}, err
		}
		if err := c.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: wire}); err != nil && !errors.Is(err, nats.ErrConnectionReconnecting) {
			return Sent{}, err
		}
	}
}

// The status header of nats-server's no-responders reply (nats.go's own
// names are unexported).
const (
	statusHeader = "Status"
	noResponders = "503"
)

// parseAck reads the routing service's answer to a send of frame id: a
// subjects.SendAck, or an error as *APIError (no responders is
// ErrUnavailable: no routing service runs).
func parseAck(subject string, msg *nats.Msg, id string) (Sent, error) {
	if len(msg.Data) == 0 && msg.Header.Get(statusHeader) == noResponders {
		return Sent{}, &APIError{Subject: subject, Code: subjects.CodeUnavailable, Message: "no routing service answers"}
	}
	if err := replyError(subject, msg); err != nil {
		return Sent{}, err
	}
	var ack subjects.SendAck
	if err := json.Unmarshal(msg.Data, &ack); err != nil {
		return Sent{}, fmt.Errorf("%s: decode acknowledgement: %w", subject, err)
	}
	if ack.ID != id {
		return Sent{}, fmt.Errorf("%s: %w: acknowledgement of frame %q, sent %q", subject, ErrUnavailable, ack.ID, id)
	}
	return Sent{ID: ack.ID, Seq: ack.Seq, Duplicate: ack.Duplicate}, nil
}

// replyError returns the *APIError of an error reply (micro's error
// headers), or nil for any other reply.
func replyError(subject string, msg *nats.Msg) error {
	codeText := msg.Header.Get(micro.ErrorCodeHeader)
	if codeText == "" {
		return nil
	}
	code, err := strconv.Atoi(codeText)
	if err != nil {
		return fmt.Errorf("%s: malformed error code %q", subject, codeText)
	}
	return &APIError{Subject: subject, Code: code, Message: msg.Header.Get(micro.ErrorHeader), RetryAfter: retryAfter(msg)}
}

// sleepCtx waits d unless ctx ends first; it reports whether it waited.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// replyMux receives the replies of acknowledged sends on one subscription
// of the connection's own inbox (<inbox>.<n>), so that a send can be
// published while its room's lock is held and its acknowledgement awaited
// after the lock is released. The subscription is made at the first send
// and lives as long as the connection.
type replyMux struct {
	nc *nats.Conn

	mu      sync.Mutex
	prefix  string
	sub     *nats.Subscription
	next    uint64
	waiting map[string]chan *nats.Msg
}

func newReplyMux(nc *nats.Conn) *replyMux {
	return &replyMux{nc: nc, waiting: map[string]chan *nats.Msg{}}
}

// register returns a fresh reply subject, the channel its replies arrive
// on, and a function that forgets it.
func (m *replyMux) register() (string, <-chan *nats.Msg, func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sub == nil {
		prefix := m.nc.NewInbox() + "."
		sub, err := m.nc.Subscribe(prefix+"*", m.dispatch)
		if err != nil {
			return "", nil, nil, fmt.Errorf("subscribe to acknowledgements: %w", err)
		}
		m.prefix, m.sub = prefix, sub
	}
	m.next++
	token := strconv.FormatUint(m.next, 36)
	ch := make(chan *nats.Msg, 4)
	m.waiting[token] = ch
	return m.prefix + token, ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.waiting, token)
	}, nil
}

// dispatch hands a reply to its waiting send; a reply nobody waits for
// any more (a late one, or one more than the send's buffer) is dropped.
func (m *replyMux) dispatch(msg *nats.Msg) {
	m.mu.Lock()
	token, ok := strings.CutPrefix(msg.Subject, m.prefix)
	ch, waiting := m.waiting[token]
	m.mu.Unlock()
	if !ok || !waiting {
		return
	}
	select {
	case ch <- msg:
	default:
	}
}
