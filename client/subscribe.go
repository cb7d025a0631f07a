package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/subjects"
)

// SubscribeOption chooses where a subscription starts (the default is
// NewOnly).
type SubscribeOption func(*startPoint)

// startPoint is where a subscription starts in the room log.
type startPoint struct {
	kind  startKind
	seq   uint64
	since time.Time
	last  int
}

type startKind int

const (
	startNew startKind = iota
	startSeq
	startSince
	startLast
)

// FromSeq starts with the stored frame of sequence seq (Message.Seq,
// Subscription.Position()+1 to resume), or the first one after it the
// caller may see; 0 starts with the first frame the caller may see
// (those stored since it was invited).
func FromSeq(seq uint64) SubscribeOption {
	return func(p *startPoint) { *p = startPoint{kind: startSeq, seq: seq} }
}

// Since starts with the first frame stored at or after t.
func Since(t time.Time) SubscribeOption {
	return func(p *startPoint) { *p = startPoint{kind: startSince, since: t} }
}

// Last starts with the last n stored frames (fewer when the caller may
// see fewer).
func Last(n int) SubscribeOption {
	return func(p *startPoint) { *p = startPoint{kind: startLast, last: max(n, 0)} }
}

// NewOnly starts with the frames stored after Subscribe: the default.
func NewOnly() SubscribeOption {
	return func(p *startPoint) { *p = startPoint{kind: startNew} }
}

// Tuning of subscriptions.
const (
	// deliveryBuffer bounds the deliveries between nats.go and the
	// sequencer; beyond it nats.go buffers (and, past its own limits,
	// drops and reports a slow consumer, which makes the subscription
	// catch up from the log).
	deliveryBuffer = 1024
	// reorderWait is how long a delivery that does not follow the last
	// one waits for the missing ones to arrive (two routing instances
	// may deliver a room's frames out of order) before they are read
	// from the log.
	reorderWait = 25 * time.Millisecond
	// maxReordered bounds the deliveries held back waiting for missing
	// ones; past it the missing ones are read from the log at once.
	maxReordered = 4096
	// catchUpPatience is how long a subscription keeps trying to read
	// frames it missed from the log without any progress before it
	// reports them lost (ErrGap) and moves on.
	catchUpPatience = 30 * time.Second
	// catchUpRetryMax bounds the pause between failed reads.
	catchUpRetryMax = 2 * time.Second
)

// Subscription is a room subscription; Unsubscribe ends it.
type Subscription struct {
	c        *Conn
	room     string
	keep     bool // the room keeps history: deliveries are sequenced
	handler  func(Message)
	onReject func(error)

	sub      *nats.Subscription
	stopSlow func()
	ctx      context.Context
	cancel   context.CancelFunc
	in       chan delivery
	kick     chan struct{} // catch up: a slow consumer
	pipe     *pipeline
	seen     *idSet // used by the pipeline's delivering goroutine only
	position atomic.Uint64
	wg       sync.WaitGroup
	stop     sync.Once
	stopErr  error

	// Owned by the sequencer goroutine.
	last   uint64              // the last sequence handed to the pipeline
	held   map[uint64]delivery // deliveries waiting for missing ones, by seq
	byPrev map[uint64]uint64   // held deliveries' seq by prev
}

// delivery is one frame the routing service delivered, or why it could
// not be read.
type delivery struct {
	seq, prev uint64
	wire      []byte
	err       error
}

// Position returns the room-log sequence of the last frame handed to the
// handler (or refused to onReject; or, before any, the one the
// subscription started after): a later subscription resumes after it with
// FromSeq(Position()+1). 0 in a room that keeps no history.
func (s *Subscription) Position() uint64 { return s.position.Load() }

// Unsubscribe stops delivery and waits for the subscription's goroutines
// (so it must not be called from the handler). Frames not yet handed to
// the handler are dropped.
func (s *Subscription) Unsubscribe() error {
	s.stop.Do(func() {
		s.stopErr = s.sub.Unsubscribe()
		if errors.Is(s.stopErr, nats.ErrConnectionClosed) || errors.Is(s.stopErr, nats.ErrBadSubscription) {
			s.stopErr = nil
		}
		s.stopSlow()
		s.cancel()
		s.c.untrack(s)
	})
	s.wg.Wait()
	return s.stopErr
}

func (s *Subscription) stopReading() { _ = s.Unsubscribe() }

// Subscribe delivers the room's messages to handler, one at a time and in
// the room log's order: only frames that verify (signature, sender's key
// grant, epoch, replay) and decrypt. Rejected frames go to onReject when
// set (for logging), never to handler. In an encrypted room a sender is
// admitted by the owner's key grant its frame carries, so checking a new
// sender costs no request; in a cleartext room the service is asked about
// that one sender (see Conn.Members). Frames are verified and opened in
// parallel and delivered in order. A frame of an epoch this client does
// not know yet waits for the room's next refresh (at most one a second)
// without holding up the others' checks.
//
// The routing service delivers the room's frames into this client's own
// inbox (subjects.Deliver), each with its sequence in the room log and the
// sequence of the frame before it. In a room that keeps history the
// subscription starts where opts say (NewOnly by default, FromSeq, Since,
// Last: read from the log first, then live) and loses nothing after that:
// a delivery that does not follow the last one (a frame missed, or two
// routing instances that delivered out of order) makes it read the missing
// frames from the log (RoomsHistory) before it goes on, and so do a
// reconnect and messages nats.go dropped (a slow consumer); frames that
// arrive meanwhile are held back, and nothing is delivered twice (by
// sequence, and by frame ID: a frame the log holds twice is delivered
// once). Frames the log could not give for half a minute (catchUpPatience)
// are reported to onReject as ErrGap, and the subscription goes on. In a room that keeps
// no history frames are delivered as they arrive (Message.Seq 0) and
// whatever is sent while the client is away is lost.
//
// A stored frame is legitimately old, so a reader of the room log does not
// apply the maximum frame age, nor the grace period of the previous
// epoch: a frame of any epoch up to the current one is accepted if the
// owner granted its sender that epoch's key. Replays are refused per
// subscription by the log's sequence numbers and the frames' IDs (the last
// 4,096), not by e2e's per-sender replay window, which assumes frames
// arrive in about the order sealed. So whoever controls the servers can drop, delay, withhold and
// reorder frames (reordering only within what this subscription has not
// yet delivered), and can deliver a frame the log holds to a later
// subscription as new; it cannot forge a frame, admit a sender the owner
// did not grant a key to, or make one subscription deliver the same frame
// twice. A member removed from the room still holds the keys of the epochs
// it was granted, so with the servers' help it could have frames of those
// epochs stored among the old ones, under its own name.
//
// Subscribe fetches the room's state, checks it (ErrUntrustedRoom,
// ErrEpochRollback) and, in an encrypted room, the current room key and
// the owner's grant of it (ErrUnauthenticatedKey), so that a key the owner
// did not give is refused before anything is read with it; then it reads
// its start point from the log (a caller that is not a member gets
// ErrForbidden). It returns before a long catch-up ends.
func (c *Conn) Subscribe(ctx context.Context, roomID string, handler func(Message), onReject func(error), opts ...SubscribeOption) (*Subscription, error) {
	var start startPoint
	for _, opt := range opts {
		opt(&start)
	}
	subject, err := subjects.Deliver(c.id.PublicKey(), roomID)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	rc, err := c.keys.room(ctx, roomID, true)
	if err != nil {
		return nil, fmt.Errorf("subscribe to room %s: %w", roomID, err)
	}
	info := c.keys.info(rc)
	if info.Mode == subjects.ModeE2E && c.encKey != nil {
		if _, err := c.keys.roomKey(ctx, roomID, info.Epoch); err != nil {
			return nil, fmt.Errorf("subscribe to room %s: %w", roomID, err)
		}
	}
	s := &Subscription{
		c: c, room: roomID, keep: info.History == subjects.HistoryKeep,
		handler: handler, onReject: onReject,
		in: make(chan delivery, deliveryBuffer), kick: make(chan struct{}, 1),
		seen: newIDSet(maxRememberedIDs),
		held: map[uint64]delivery{}, byPrev: map[uint64]uint64{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.pipe = newPipeline(c.newOpener(roomID, s.keep), s.deliver)
	if s.sub, err = c.nc.Subscribe(subject, s.receive); err != nil {
		s.abort()
		return nil, fmt.Errorf("subscribe to room %s: %w", roomID, err)
	}
	s.stopSlow = c.hooks.onSlowConsumer(s.sub, s.catchUpSoon)
	// The subscription must be in place on the server before the start
	// is read from the log, so that every frame stored after that read is
	// delivered live.
	if err := c.nc.FlushWithContext(ctx); err != nil {
		s.abortSubscribed()
		return nil, fmt.Errorf("subscribe to room %s: %w", roomID, err)
	}
	if err := c.subscriptionRefused(subject); err != nil {
		s.abortSubscribed()
		return nil, fmt.Errorf("subscribe to room %s: %w", roomID, err)
	}
	first, err := s.readStart(ctx, start)
	if err != nil {
		s.abortSubscribed()
		return nil, fmt.Errorf("subscribe to room %s: %w", roomID, err)
	}
	c.track(s)
	s.wg.Go(func() { s.run(first) })
	return s, nil
}

// abort undoes a Subscribe that failed before the NATS subscription.
func (s *Subscription) abort() {
	s.cancel()
	s.pipe.close()
	s.pipe.wait()
}

// abortSubscribed undoes a Subscribe that failed after it.
func (s *Subscription) abortSubscribed() {
	_ = s.sub.Unsubscribe()
	s.stopSlow()
	s.abort()
}

// subscriptionRefused reports the server's refusal of a subscription to
// subject (a permission violation, which nats.go keeps as the
// connection's last error): ErrForbidden.
func (c *Conn) subscriptionRefused(subject string) error {
	err := c.nc.LastError()
	if errors.Is(err, nats.ErrPermissionViolation) && containsQuoted(err.Error(), subject) {
		return fmt.Errorf("the server refused the subscription to %s: %w", subject, ErrForbidden)
	}
	return nil
}

func containsQuoted(s, sub string) bool { return strings.Contains(s, strconv.Quote(sub)) }

// startPage is what Subscribe read of the start point: the frames to
// deliver first (ascending), the next sequence to read from (0: none),
// and the sequence the subscription continues after when there are no
// frames.
type startPage struct {
	frames []subjects.StoredFrame
	next   uint64
	after  uint64
	// more, for Last, is how many frames are still to be read backwards
	// before frames[0].
	more int
}

// readStart reads the first page of the start point, so that Subscribe
// fails when the log refuses the caller (not a member).
func (s *Subscription) readStart(ctx context.Context, start startPoint) (startPage, error) {
	if !s.keep {
		return startPage{}, nil
	}
	switch start.kind {
	case startNew:
		r, err := s.c.history(ctx, subjects.HistoryRequest{RoomID: s.room, Last: 1, Limit: 1})
		if err != nil {
			return startPage{}, err
		}
		return startPage{after: r.LastSeq}, nil
	case startLast:
		if start.last == 0 {
			return s.readStart(ctx, startPoint{kind: startNew})
		}
		n := min(start.last, subjects.MaxHistoryLimit)
		r, err := s.c.history(ctx, subjects.HistoryRequest{RoomID: s.room, Last: n, Limit: n})
		if err != nil {
			return startPage{}, err
		}
		p := startPage{frames: ascending(r.Frames, 0, 0), after: r.LastSeq}
		if len(p.frames) > 0 && p.frames[0].Seq > r.FirstSeq {
			p.more = start.last - len(p.frames)
		}
		return p, nil
	default:
		req := subjects.HistoryRequest{RoomID: s.room, From: start.seq, Limit: subjects.MaxHistoryLimit}
		if start.kind == startSince {
			req = subjects.HistoryRequest{RoomID: s.room, Since: start.since, Limit: subjects.MaxHistoryLimit}
		}
		r, err := s.c.history(ctx, req)
		if err != nil {
			return startPage{}, err
		}
		p := startPage{frames: ascending(r.Frames, 0, 0), next: r.Next}
		if len(p.frames) == 0 {
			// Nothing yet: continue after the newest frame, or before the
			// one asked for, whichever comes first, but not before what
			// the caller may see.
			p.after = r.LastSeq
			if start.kind == startSeq {
				p.after = min(r.LastSeq, max(start.seq, r.FirstSeq, 1)-1)
			}
		}
		return p, nil
	}
}

// receive is the NATS handler of deliveries: it hands them to the
// sequencer, waiting while it is busy (nats.go buffers meanwhile).
func (s *Subscription) receive(msg *nats.Msg) {
	d := delivery{wire: msg.Data}
	if s.keep {
		d.seq, d.prev, d.err = deliveryHeaders(msg)
	}
	select {
	case s.in <- d:
	case <-s.ctx.Done():
	}
}

// deliveryHeaders reads the room-log sequence and the previous sequence of
// a delivery.
func deliveryHeaders(msg *nats.Msg) (seq, prev uint64, err error) {
	seqText, prevText := msg.Header.Get(subjects.HeaderSeq), msg.Header.Get(subjects.HeaderPrev)
	if seqText == "" {
		return 0, 0, nil
	}
	if seq, err = strconv.ParseUint(seqText, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("delivery with a malformed %s header %q", subjects.HeaderSeq, seqText)
	}
	if prevText == "" && seq == 0 {
		return 0, 0, nil
	}
	if prev, err = strconv.ParseUint(prevText, 10, 64); err != nil || (seq != 0 && prev >= seq) {
		return 0, 0, fmt.Errorf("delivery of seq %d with a malformed %s header %q", seq, subjects.HeaderPrev, prevText)
	}
	return seq, prev, nil
}

// reject reports an error to onReject, through the pipeline, so that
// onReject and the handler are never called at the same time.
func (s *Subscription) reject(err error) bool {
	return s.pipe.fail(s.ctx, fmt.Errorf("room %s: %w", s.room, err))
}

// deliver runs on the pipeline's delivering goroutine: it drops a frame
// delivered before (by ID), reports a refused one, hands the others to the
// handler, and records the position.
func (s *Subscription) deliver(r received) {
	if s.ctx.Err() != nil {
		return
	}
	if r.seq > s.position.Load() {
		s.position.Store(r.seq)
	}
	switch {
	case r.id != "" && s.seen.has(r.id):
		// Delivered already, under another sequence.
	case r.err != nil:
		if s.onReject != nil {
			s.onReject(r.err)
		}
	default:
		s.seen.add(r.id)
		s.handler(r.m)
	}
}

// catchUpSoon asks the sequencer to read what it missed from the log.
func (s *Subscription) catchUpSoon() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run is the sequencer: it starts from the start page, then orders the
// deliveries by sequence, reads missing frames from the log, and hands the
// frames in order to the pipeline. It closes the pipeline when it ends.
func (s *Subscription) run(first startPage) {
	defer func() {
		s.pipe.close()
		s.pipe.wait()
	}()
	if s.keep && !s.begin(first) {
		return
	}
	var gapTimer <-chan time.Time
	for {
		reconnected := s.c.reconnects.wait()
		select {
		case <-s.ctx.Done():
			return
		case d := <-s.in:
			if d.err != nil {
				if !s.reject(d.err) {
					return
				}
				continue
			}
			if !s.keep || d.seq == 0 {
				if !s.pipe.submit(s.ctx, 0, d.wire) {
					return
				}
				continue
			}
			s.hold(d)
		case <-gapTimer:
			gapTimer = nil
			if !s.fillGap() {
				return
			}
		case <-reconnected:
			if s.keep && !s.catchUp(0) {
				return
			}
		case <-s.kick:
			if s.keep && !s.catchUp(0) {
				return
			}
		}
		if !s.advance() {
			return
		}
		switch {
		case len(s.held) == 0:
			gapTimer = nil
		case len(s.held) >= maxReordered:
			if !s.fillGap() || !s.advance() {
				return
			}
		case gapTimer == nil:
			gapTimer = time.After(reorderWait)
		}
	}
}

// begin hands the start page to the pipeline and reads the rest of the
// start point; it reports false when the subscription ends meanwhile.
func (s *Subscription) begin(first startPage) bool {
	frames := first.frames
	if first.more > 0 {
		frames = s.readBack(frames, first.more)
	}
	if len(frames) == 0 {
		s.last = first.after
		if first.next != 0 {
			s.last = first.next - 1
		}
		s.position.Store(s.last)
		if first.next != 0 {
			return s.catchUp(0)
		}
		return true
	}
	s.last = frames[0].Seq - 1
	s.position.Store(s.last)
	for _, f := range frames {
		if !s.submit(f.Seq, f.Frame) {
			return false
		}
	}
	if first.next != 0 {
		return s.catchUp(0)
	}
	return true
}

// submit hands the frame of sequence seq to the pipeline, if it follows
// the last one.
func (s *Subscription) submit(seq uint64, wire []byte) bool {
	if seq <= s.last {
		return true
	}
	s.last = seq
	return s.pipe.submit(s.ctx, seq, wire)
}

// hold keeps a delivery until it follows the last frame handed on.
func (s *Subscription) hold(d delivery) {
	if d.seq <= s.last {
		return // a duplicate, or read from the log already
	}
	if old, ok := s.held[d.seq]; ok {
		delete(s.byPrev, old.prev)
	}
	s.held[d.seq] = d
	s.byPrev[d.prev] = d.seq
}

// advance hands on the held deliveries that follow the last frame, and
// drops those the log already gave.
func (s *Subscription) advance() bool {
	for {
		seq, ok := s.byPrev[s.last]
		if !ok {
			break
		}
		d := s.held[seq]
		s.drop(d)
		if !s.submit(d.seq, d.wire) {
			return false
		}
	}
	for seq, d := range s.held {
		if seq <= s.last {
			s.drop(d)
		}
	}
	return true
}

func (s *Subscription) drop(d delivery) {
	delete(s.held, d.seq)
	if s.byPrev[d.prev] == d.seq {
		delete(s.byPrev, d.prev)
	}
}

// fillGap reads the frames missing before the held deliveries from the
// log, then hands on whatever is held, in order: the log has given all it
// will.
func (s *Subscription) fillGap() bool {
	if len(s.held) == 0 {
		return true
	}
	until := slices.Max(slicesKeys(s.held))
	if !s.catchUp(until) {
		return false
	}
	seqs := slicesKeys(s.held)
	slices.Sort(seqs)
	for _, seq := range seqs {
		d := s.held[seq]
		s.drop(d)
		if !s.submit(d.seq, d.wire) {
			return false
		}
	}
	return true
}

func slicesKeys(m map[uint64]delivery) []uint64 {
	keys := make([]uint64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
