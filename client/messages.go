package client

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/unibus/unibus/client/e2e"
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
	// Seq is the frame's sequence in the room log; 0 when the room keeps
	// no history.
	Seq  uint64
	Data []byte
}

// opener verifies and opens the frames of one room for one reader (a
// subscription, a page of history) with a receiver of its own: its replay
// window is the reader's, so that the same frame read by two readers, or
// read again from the log, is not taken for a replay, while one reader
// never accepts one frame twice.
type opener struct {
	c    *Conn
	room string
	recv *e2e.Receiver
}

// newOpener returns an opener of roomID's frames. A reader of the room log
// (stored) reads legitimately old frames, of earlier epochs too, in log
// order but opened in parallel: the age check, the grace period of the
// previous epoch and the per-sender replay window give way to the log's
// sequence numbers and the reader's frame-ID dedupe; the signature, the
// sender's key grant of the frame's epoch and the decryption are checked
// as ever.
func (c *Conn) newOpener(roomID string, stored bool) *opener {
	cfg := e2e.ReceiverConfig{Keys: c.keys, Replay: e2e.NewReplayWindow(0)}
	if stored {
		// The reader drops what it already delivered by the log's
		// sequence and the frame's ID (see Subscribe); the per-sender
		// replay window would refuse frames opened out of order.
		cfg.MaxFrameAge, cfg.EarlierEpochs, cfg.NoReplayWindow = e2e.NoMaxFrameAge, true, true
	}
	r, err := e2e.NewReceiver(cfg)
	if err != nil {
		// Unreachable: the configuration is valid.
		panic(fmt.Sprintf("client: receiver configuration: %v", err))
	}
	return &opener{c: c, room: roomID, recv: r}
}

// received is the outcome of opening one frame: the message, or why it
// was refused; id is the frame's ID whenever it decoded.
type received struct {
	m   Message
	seq uint64
	id  string
	err error
}

// open verifies and opens wire, the frame of room-log sequence seq (0: not
// stored), that arrived at arrived.
func (o *opener) open(seq uint64, wire []byte, arrived time.Time) received {
	f, err := e2e.Decode(wire)
	if err != nil {
		return received{seq: seq, err: fmt.Errorf("receive frame%s: %w", describeSeq(seq), err)}
	}
	r, err := o.recv.Accept(o.room, f, arrived)
	if err != nil {
		// The ID of a refused frame tells a copy of one delivered before
		// (refused as a replay) from others.
		return received{seq: seq, id: f.ID(), err: fmt.Errorf("receive frame%s: %w", describeSeq(seq), err)}
	}
	g := r.Frame
	return received{seq: seq, id: r.ID, m: Message{
		ID: r.ID, Room: o.room, Sender: g.Sender, Type: g.T, Thread: g.Thr, ReplyTo: g.Re,
		Time: time.UnixMilli(g.TS), Epoch: g.Epoch, Seq: seq, Data: r.Payload,
	}}
}

// openAfterRefresh handles a frame that failed with firstErr, a newer
// epoch than this client knows (its signature verified): it waits for a
// refresh of the room that started after the frame arrived, shared with
// every other frame waiting for one and at most one per
// roomRefreshInterval, and tries the frame once more.
func (o *opener) openAfterRefresh(seq uint64, wire []byte, arrived time.Time, firstErr error) received {
	ctx, cancel := context.WithTimeout(context.Background(), roomRefreshInterval+keyringTimeout)
	defer cancel()
	if err := o.c.keys.refresh(ctx, o.room, arrived, true); err != nil {
		return received{seq: seq, err: errors.Join(firstErr, err)}
	}
	return o.open(seq, wire, time.Now())
}

// pipelineDepth bounds the frames between arrival and delivery.
const pipelineDepth = 1024

// pipeline verifies and opens frames in parallel (signature checks
// dominate the cost) and hands the outcomes to deliver one at a time, in
// the order the frames were submitted. Only one goroutine submits; it
// calls close when done, and wait returns once every submitted frame was
// handed over.
type pipeline struct {
	op      *opener
	deliver func(received)
	work    chan job
	queue   chan *pending
	wg      sync.WaitGroup
}

// job is one frame to open; pending its outcome.
type job struct {
	seq  uint64
	wire []byte
	p    *pending
}

type pending struct {
	done chan received
}

// newPipeline starts a pipeline of workers (GOMAXPROCS) for op.
func newPipeline(op *opener, deliver func(received)) *pipeline {
	p := &pipeline{op: op, deliver: deliver, work: make(chan job, pipelineDepth), queue: make(chan *pending, pipelineDepth)}
	for range runtime.GOMAXPROCS(0) {
		p.wg.Go(p.worker)
	}
	p.wg.Go(func() {
		for q := range p.queue {
			p.deliver(<-q.done)
		}
	})
	return p
}

func (p *pipeline) worker() {
	for j := range p.work {
		arrived := time.Now()
		r := p.op.open(j.seq, j.wire, arrived)
		if isRetryable(r.err) {
			// Wait for the room's refresh in a goroutine of the
			// pipeline's own, so that a flood of such frames holds up no
			// worker; their number is bounded by the pipeline.
			p.wg.Go(func() { j.p.done <- p.op.openAfterRefresh(j.seq, j.wire, arrived, r.err) })
			continue
		}
		j.p.done <- r
	}
}

// submit queues a frame; it blocks while the pipeline is full, and gives
// up (false) when ctx ends.
func (p *pipeline) submit(ctx context.Context, seq uint64, wire []byte) bool {
	q := &pending{done: make(chan received, 1)}
	select {
	case p.queue <- q:
	case <-ctx.Done():
		return false
	}
	// The queue and the work channel have the same capacity and every
	// queued frame is submitted, so this does not block for long; the
	// frame queued above must be given its work in any case.
	p.work <- job{seq: seq, wire: wire, p: q}
	return true
}

// fail queues an error for deliver, in order with the frames.
func (p *pipeline) fail(ctx context.Context, err error) bool {
	q := &pending{done: make(chan received, 1)}
	q.done <- received{err: err}
	select {
	case p.queue <- q:
		return true
	case <-ctx.Done():
		return false
	}
}

// close ends submissions; the frames submitted are still opened and
// handed over.
func (p *pipeline) close() {
	close(p.work)
	close(p.queue)
}

// wait waits for the pipeline's goroutines, after close.
func (p *pipeline) wait() { p.wg.Wait() }

// idSet remembers the IDs of the last frames a reader delivered
// (bounded, oldest forgotten first), so that one frame the log holds
// twice, under two sequences, is delivered once.
type idSet struct {
	ids  map[string]struct{}
	ring []string
	next int
}

// delivered IDs remembered per subscription.
const maxRememberedIDs = 4096

func newIDSet(n int) *idSet {
	return &idSet{ids: make(map[string]struct{}, n), ring: make([]string, n)}
}

// add records id and reports whether it is new.
func (s *idSet) add(id string) bool {
	if _, ok := s.ids[id]; ok {
		return false
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.ids, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % len(s.ring)
	s.ids[id] = struct{}{}
	return true
}

// has reports whether id was recorded.
func (s *idSet) has(id string) bool {
	_, ok := s.ids[id]
	return ok
}

// describeSeq names a frame by its room-log sequence, if it has one.
func describeSeq(seq uint64) string {
	if seq == 0 {
		return ""
	}
	return " of seq " + strconv.FormatUint(seq, 10)
}
