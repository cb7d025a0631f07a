package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/subjects"
)

// EventSubscription delivers the caller's events; Stop ends it.
type EventSubscription struct {
	c       *Conn
	handler func(subjects.Event)

	sub      *nats.Subscription
	stopSlow func()
	ctx      context.Context
	cancel   context.CancelFunc
	bell     chan struct{}
	position atomic.Uint64
	wg       sync.WaitGroup
	stop     sync.Once
	stopErr  error
}

// eventsRetryMax bounds the pause between failed reads of the events.
const eventsRetryMax = 5 * time.Second

// Events delivers the caller's events (invited, removed, rekeyed, revoked:
// subjects.Event) to handler, one at a time, in order and once each. With
// from 0 it starts with the events after now; with from n, with the stored
// events of sequence n and later (Event.Seq; resume with Position()+1).
//
// The services store each event in the caller's durable event log and ring
// a doorbell (subjects.Events) that this subscription listens to; at each
// ring, at a reconnect and when nats.go dropped rings, it reads what is
// new from the log (UsersEvents), so an event that happened while the
// client was away or disconnected is delivered when it is back. Reads that
// fail are retried (at most eventsRetryMax apart) until they succeed or
// Stop. Events are notices, not proof: act on one by asking the control
// plane (Invitations, GetRoom), which the client checks.
//
// Events returns once the start is read, so that a refusal is its error.
func (c *Conn) Events(ctx context.Context, from uint64, handler func(subjects.Event)) (*EventSubscription, error) {
	subject, err := subjects.Events(c.id.PublicKey())
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	s := &EventSubscription{c: c, handler: handler, bell: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.sub, err = c.nc.Subscribe(subject, func(*nats.Msg) { s.ring() }); err != nil {
		s.cancel()
		return nil, fmt.Errorf("events: %w", err)
	}
	s.stopSlow = c.hooks.onSlowConsumer(s.sub, s.ring)
	fail := func(err error) (*EventSubscription, error) {
		_ = s.sub.Unsubscribe()
		s.stopSlow()
		s.cancel()
		return nil, fmt.Errorf("events: %w", err)
	}
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return fail(err)
	}
	if err := c.subscriptionRefused(subject); err != nil {
		return fail(err)
	}
	// The doorbell is in place: whatever is stored after this read rings.
	req := subjects.EventsRequest{From: from, Limit: subjects.MaxEventsLimit}
	if from == 0 {
		req.Limit = 1
	}
	var first subjects.EventsResponse
	if err := c.call(ctx, subjects.UsersEvents, req, &first); err != nil {
		return fail(err)
	}
	last := first.LastSeq
	if from != 0 {
		last = from - 1
	} else {
		first = subjects.EventsResponse{}
	}
	s.position.Store(last)
	c.track(s)
	s.wg.Go(func() { s.run(last, first) })
	return s, nil
}

// Position returns the sequence of the last event handed to the handler
// (or the one the subscription started after): resume with Events(ctx,
// Position()+1, …).
func (s *EventSubscription) Position() uint64 { return s.position.Load() }

// Stop ends the subscription and waits for its goroutine (so it must not
// be called from the handler).
func (s *EventSubscription) Stop() error {
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

func (s *EventSubscription) stopReading() { _ = s.Stop() }

// ring asks the reader to read the log.
func (s *EventSubscription) ring() {
	select {
	case s.bell <- struct{}{}:
	default:
	}
}

// A ring may arrive before the event it rings for is readable (the
// event log stores what it captures a moment after the doorbell's
// subscribers get it), so a ring that finds nothing new is followed by a
// few more reads, bellRecheck apart and then further, up to
// bellRecheckMax in all.
const (
	bellRecheck    = 20 * time.Millisecond
	bellRecheckMax = 5 * time.Second
)

// run delivers the first page, then reads the log at every ring and
// reconnect.
func (s *EventSubscription) run(last uint64, first subjects.EventsResponse) {
	last = s.deliver(last, first.Events)
	if first.Next != 0 {
		s.ring()
	}
	var recheck <-chan time.Time
	var wait, waited time.Duration
	for {
		reconnected := s.c.reconnects.wait()
		rang := false
		select {
		case <-s.ctx.Done():
			return
		case <-s.bell:
			rang, wait, waited = true, bellRecheck, 0
		case <-reconnected:
		case <-recheck:
			recheck = nil
		}
		before := last
		var ok bool
		if last, ok = s.read(last); !ok {
			return
		}
		switch {
		case last != before:
			recheck, wait = nil, 0
		case rang || (wait > 0 && waited < bellRecheckMax):
			recheck = time.After(wait)
			waited += wait
			wait *= 2
		}
	}
}

// read reads and delivers the events after last, page after page, retrying
// until it succeeds; it returns the new last, and false when the
// subscription ends.
func (s *EventSubscription) read(last uint64) (uint64, bool) {
	pause := 100 * time.Millisecond
	from := last + 1
	for {
		var r subjects.EventsResponse
		err := s.c.call(s.ctx, subjects.UsersEvents, subjects.EventsRequest{From: from, Limit: subjects.MaxEventsLimit}, &r)
		if s.ctx.Err() != nil {
			return last, false
		}
		if err != nil {
			if !sleepCtx(s.ctx, pause) {
				return last, false
			}
			pause = min(2*pause, eventsRetryMax)
			continue
		}
		pause = 100 * time.Millisecond
		last = s.deliver(last, r.Events)
		if r.Next <= from {
			// The end (Next 0), or a next page that does not follow:
			// read again at the next ring rather than loop.
			return last, true
		}
		from = r.Next
	}
}

// deliver hands the events after last to the handler, in ascending
// sequence, and returns the new last.
func (s *EventSubscription) deliver(last uint64, events []subjects.Event) uint64 {
	for _, e := range events {
		if e.Seq <= last || s.ctx.Err() != nil {
			continue
		}
		last = e.Seq
		s.position.Store(last)
		s.handler(e)
	}
	return last
}
