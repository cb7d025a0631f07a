package router

import (
	"errors"
	"sync"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// The membership view follows the store a little behind it: a member's
// first send can reach the router a fraction of a millisecond after the
// reply that made it a member (an accept, a room just created), before
// the view has seen the change. A refusal then would be wrong, so a send
// the view does not admit (no such room, not a member) is not refused at
// once: it waits in the recheck lane, and is checked again every
// recheckEvery until recheckGrace after its arrival. Admitted, it goes to
// its room's shard; still refused then, it is refused. The sender's later
// frames to the same room follow it through the lane, so that a sender's
// frames keep their order.
const (
	// recheckEvery is the pause between two checks of a waiting send.
	recheckEvery = 5 * time.Millisecond
	// recheckGrace is how long after its arrival a send the view does not
	// admit is refused.
	recheckGrace = 200 * time.Millisecond
	// recheckQueue bounds the sends waiting in the lane; beyond it a send
	// the view does not admit is refused at once.
	recheckQueue = 1024
)

// recheckLane holds the sends waiting for the view to catch up. It owns
// one goroutine, stopped by stop.
type recheckLane struct {
	r *Router

	mu      sync.Mutex
	queue   []*send        // in arrival order
	pending map[string]int // sends in queue by senderRoom
	stopped bool

	wake chan struct{} // capacity 1: the queue changed
	quit chan struct{}
	done chan struct{}
}

func newRecheckLane(r *Router) *recheckLane {
	l := &recheckLane{r: r, pending: map[string]int{}, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

// senderRoom keys a sender's sends to one room.
func senderRoom(s *send) string { return s.room + "." + s.pub }

// isMiss reports whether a view's refusal may be the view lagging the
// store: no such room, or not a member.
func isMiss(err error) bool {
	return errors.Is(err, kvstore.ErrNotFound) || errors.Is(err, kvstore.ErrNotMember)
}

// holds reports whether sends of s's sender to s's room wait in the lane:
// s must then follow them.
func (l *recheckLane) holds(s *send) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending[senderRoom(s)] > 0
}

// add queues s, which the view refused with miss, or which only follows
// a waiting send (miss nil). It returns the refusal of a send it cannot
// queue: 503 when the router stops; when the lane is full, the view's
// answer (403, 404), or 503 for a follower.
func (l *recheckLane) add(s *send, miss error) *refusal {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.stopped:
		return errStopping()
	case len(l.queue) >= recheckQueue && miss != nil:
		return membershipRefusal(s.room, s.pub, miss)
	case len(l.queue) >= recheckQueue:
		return refuse(subjects.CodeUnavailable, nil, "the router is busy; retry the send")
	}
	s.due = s.start
	if miss != nil {
		s.due = s.start.Add(recheckEvery)
	}
	l.queue = append(l.queue, s)
	l.pending[senderRoom(s)]++
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

// run checks the waiting sends when they are due, until stop.
func (l *recheckLane) run() {
	defer close(l.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, ok := l.pass(time.Now())
		if ok {
			timer.Reset(time.Until(next))
		} else {
			timer.Reset(time.Hour)
		}
		select {
		case <-l.quit:
			return
		case <-l.wake:
		case <-timer.C:
		}
	}
}

// pass checks every due send, in arrival order: admitted ones go to their
// shards (within the lock, so that a sender's next send cannot overtake
// them), refused ones are answered (outside it). A send waits behind an
// earlier one of the same sender to the same room. It returns when the
// next waiting send is due.
func (l *recheckLane) pass(now time.Time) (time.Time, bool) {
	var refused []refusedSend
	var next time.Time
	l.mu.Lock()
	behind := map[string]bool{}
	kept := l.queue[:0]
	for _, s := range l.queue {
		key := senderRoom(s)
		if behind[key] || s.due.After(now) {
			behind[key] = true
			kept = append(kept, s)
			if next.IsZero() || s.due.Before(next) {
				next = s.due
			}
			continue
		}
		policy, err := l.r.view.Check(s.room, s.pub)
		switch {
		case err == nil:
			s.policy = policy
			if !s.due.Equal(s.start) {
				l.r.stats.rechecked.Add(1)
			}
			if f := l.r.enqueue(s); f != nil {
				refused = append(refused, refusedSend{s, f})
			}
		case isMiss(err) && now.Sub(s.start) < recheckGrace:
			s.due = now.Add(recheckEvery)
			behind[key] = true
			kept = append(kept, s)
			if next.IsZero() || s.due.Before(next) {
				next = s.due
			}
			continue
		default:
			refused = append(refused, refusedSend{s, membershipRefusal(s.room, s.pub, err)})
		}
		if l.pending[key]--; l.pending[key] == 0 {
			delete(l.pending, key)
		}
	}
	clear(l.queue[len(kept):])
	l.queue = kept
	l.mu.Unlock()
	for _, rs := range refused {
		l.r.finish(rs.s, rs.f)
	}
	return next, !next.IsZero()
}

type refusedSend struct {
	s *send
	f *refusal
}

// stop ends the lane's goroutine and refuses what still waits (503: the
// router is stopping; the sender retries elsewhere).
func (l *recheckLane) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	close(l.quit)
	<-l.done
	l.mu.Lock()
	waiting := l.queue
	l.queue, l.pending = nil, map[string]int{}
	l.mu.Unlock()
	for _, s := range waiting {
		l.r.finish(s, errStopping())
	}
}
