package svc

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// Bounds of the stranger lane.
const (
	// lookupQueueLength bounds the requests waiting for their signer to be
	// looked up, across the services of one instance.
	lookupQueueLength = 4096
	// lookupQueuedBytes bounds the bodies and headers of those requests
	// (a header may be as large as a body).
	lookupQueuedBytes = 16 << 20
	// lookupBatch is the most requests one store read resolves (one
	// multi-key direct get, well within nats-server's 1,024 results).
	lookupBatch = 256
	// refusalQueueLength bounds the refusals waiting for their turn to be
	// answered. Each holds no request body or header: some 200 bytes.
	refusalQueueLength = 4096
	// strangerRetry is the retry hint of a request refused because the
	// lane is full.
	strangerRetry = time.Second
)

// strangerLane takes the requests that no registered signer vouches for,
// apart from the registered identities' path, so that a flood of them
// costs the registered neither workers nor store round trips, and, from
// a client that waits for its answers, no more than a bounded share of
// CPU. Such a request is one whose signature the
// services have not verified: unsigned, malformed or oversized, or signed
// by a key this instance does not know to be registered (made up by an
// attacker, for one). It has two stages.
//
// Lookups (AuthEnforce): a request signed by a key nothing is known of
// here (signerUnknown) waits in a bounded queue (lookupQueueLength
// requests, lookupQueuedBytes of bodies and headers) for one goroutine
// that reads the signers of up to lookupBatch requests at a time in one
// multi-key read of the users bucket: at most one store round trip in
// flight, however fast requests come, and no write (no nonce is
// claimed). A signer found registered gets its bucket, and its request
// goes on as any registered signer's (signature, rate, a worker, nonce,
// record); a key found unregistered or revoked is remembered
// (limiter.refuse) and the request refused. No signature is checked
// before the signer is found registered: a made-up key is refused for
// being unregistered, whatever it signed.
//
// Refusals: the answers to such requests (401, 413, and 429 when the
// lane is full) are paced by a token bucket of their own, apart from the
// registered identities' buckets: newcomerShare times Config.RateLimit a
// second, in bursts of newcomerShare times Config.RateBurst. A refusal
// without a token waits, without its request's body or headers, in a
// bounded queue (refusalQueueLength), and is answered at the latest at
// its request's deadline. An attacker that waits for its answers thus
// sends no faster than they come; one that does not finds the queue full
// and its requests refused at once with 429. Neither can take the
// registered identities' workers or store.
//
// The lane's two goroutines run only while they have work: each starts
// with the first request queued and ends when its queue is empty. stop
// waits for both.
type strangerLane struct {
	store  *kvstore.Store
	limits *limiter
	// answers paces the refusals; nil (no pacing) when rate limiting is
	// off.
	answers *rate.Limiter

	lookups     chan lookup
	lookupBytes atomic.Int64
	refusals    chan refusal
	// looking and pacing are set while the lookup and the refusal
	// goroutines run.
	looking, pacing atomic.Bool
	quit            chan struct{}
	wg              sync.WaitGroup

	// mu orders lookup and refuse against stop: no goroutine starts once
	// stopped.
	mu      sync.RWMutex
	stopped bool
}

// lookup is a request waiting for its signer (call.lookup) to be looked
// up.
type lookup struct {
	s  *service
	ep *endpoint
	st *endpointStats
	c  *call
}

// size is what p holds in memory, near enough: its body and headers.
func (p lookup) size() int64 {
	n := len(p.c.body)
	for k, vs := range p.c.header {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return int64(n)
}

// refusal is the answer to a request that no registered signer vouches
// for, waiting for its turn: all it takes to send it and to account for
// it.
type refusal struct {
	s        *service
	ep       *endpoint
	st       *endpointStats
	w        responder
	who      *caller
	start    time.Time
	deadline time.Time
	e        *Error
}

// newStrangerLane returns the lane of cfg (its defaults applied).
func newStrangerLane(cfg Config, limits *limiter) *strangerLane {
	l := &strangerLane{
		store:    cfg.Store,
		limits:   limits,
		lookups:  make(chan lookup, lookupQueueLength),
		refusals: make(chan refusal, refusalQueueLength),
		quit:     make(chan struct{}),
	}
	if cfg.RateLimit >= 0 {
		l.answers = rate.NewLimiter(rate.Limit(cfg.RateLimit)*newcomerShare, cfg.RateBurst*newcomerShare)
	}
	return l
}

// refusalOf is the refusal e of the request c.
func refusalOf(s *service, ep *endpoint, st *endpointStats, c *call, e *Error) refusal {
	return refusal{s: s, ep: ep, st: st, w: c.w, who: c.logCaller(), start: c.start, deadline: c.deadline, e: e}
}

// answer sends r.
func (r refusal) answer() { r.s.finish(r.w, r.ep, r.st, r.who, r.start, r.e) }

// errStrangersBusy is the 429 of a request refused because the lane is
// full.
func errStrangersBusy() *Error {
	e := &Error{Code: subjects.CodeTooManyRequests, RetryAfter: strangerRetry}
	e.Message = fmt.Sprintf("too many requests from identities this service does not know; retry in %s", strangerRetry)
	return e
}

// lookup queues a request for the lookup of its signer, or refuses it
// (429) when the queue is full.
func (l *strangerLane) lookup(p lookup) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.stopped {
		p.s.finish(p.c.w, p.ep, p.st, p.c.logCaller(), p.c.start, errStopping())
		return
	}
	size := p.size()
	if l.lookupBytes.Add(size) > lookupQueuedBytes {
		l.lookupBytes.Add(-size)
		l.refuseLocked(refusalOf(p.s, p.ep, p.st, p.c, errStrangersBusy()))
		return
	}
	select {
	case l.lookups <- p:
	default:
		l.lookupBytes.Add(-size)
		l.refuseLocked(refusalOf(p.s, p.ep, p.st, p.c, errStrangersBusy()))
		return
	}
	if l.looking.CompareAndSwap(false, true) {
		l.wg.Go(l.lookUp)
	}
}

// refuse answers r at once if a token allows and no refusal is waiting,
// queues it otherwise, and answers it at once with a 429 when the queue
// is full.
func (l *strangerLane) refuse(r refusal) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	l.refuseLocked(r)
}

// refuseLocked is refuse with mu held for reading.
func (l *strangerLane) refuseLocked(r refusal) {
	if l.stopped || l.answers == nil || len(l.refusals) == 0 && l.answers.Allow() {
		r.answer()
		return
	}
	select {
	case l.refusals <- r:
	default:
		r.e = errStrangersBusy()
		r.answer()
		return
	}
	if l.pacing.CompareAndSwap(false, true) {
		l.wg.Go(l.pace)
	}
}

// stop answers what waits without further pacing, and returns once the
// lane's goroutines have ended. Call it once no handler submits any more
// (the services have stopped).
func (l *strangerLane) stop() {
	l.mu.Lock()
	if !l.stopped {
		l.stopped = true
		close(l.quit)
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// lookUp resolves the lookup queue, lookupBatch requests at a time, until
// it is empty.
func (l *strangerLane) lookUp() {
	batch := make([]lookup, 0, lookupBatch)
	seen := make(map[string]bool, lookupBatch)
	for {
		batch = batch[:0]
	fill:
		for len(batch) < lookupBatch {
			select {
			case p := <-l.lookups:
				l.lookupBytes.Add(-p.size())
				batch = append(batch, p)
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			clear(seen)
			l.resolve(batch, seen)
			continue
		}
		l.looking.Store(false)
		// A request queued after the queue looked empty and before the
		// flag was cleared found the goroutine running: take it on, unless
		// a new goroutine already has.
		if len(l.lookups) == 0 || !l.looking.CompareAndSwap(false, true) {
			return
		}
	}
}

// resolve looks up the signers of batch in one store read and forwards or
// refuses each request: a registered signer's request goes on to its
// service; an unregistered or revoked one is refused (401); all are
// refused with 503 (fail closed) when the read fails, or when a request's
// deadline passed first. seen is an empty map to dedupe the keys in.
func (l *strangerLane) resolve(batch []lookup, seen map[string]bool) {
	now := time.Now()
	live := batch[:0]
	pubs := make([]string, 0, len(batch))
	var deadline time.Time
	for _, p := range batch {
		if !now.Before(p.c.deadline) {
			p.st.busy.Add(1)
			p.s.finish(p.c.w, p.ep, p.st, p.c.logCaller(), p.c.start, errBusy(context.DeadlineExceeded))
			continue
		}
		live = append(live, p)
		if !seen[p.c.lookup] {
			seen[p.c.lookup] = true
			pubs = append(pubs, p.c.lookup)
		}
		if deadline.IsZero() || p.c.deadline.Before(deadline) {
			deadline = p.c.deadline
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(live[0].s.base, deadline)
	users, err := l.store.GetUsers(ctx, pubs)
	cancel()
	now = time.Now()
	for _, p := range live {
		pub := p.c.lookup
		u, found := users[pub]
		switch {
		case err != nil:
			p.s.finish(p.c.w, p.ep, p.st, p.c.logCaller(), p.c.start, storeError(err, storeMessages{}))
		case !found:
			l.limits.refuse(pub, false, now)
			l.refuse(refusalOf(p.s, p.ep, p.st, p.c, errUnregistered(pub)))
		case u.Revoked():
			l.limits.refuse(pub, true, now)
			l.refuse(refusalOf(p.s, p.ep, p.st, p.c, errRevoked(pub)))
		default:
			p.s.proceed(p.ep, p.st, p.c)
		}
	}
}

// pace answers the refusal queue in order, each refusal when a token of
// answers allows or at its deadline, whichever comes first (at once once
// the lane stops), until the queue is empty.
func (l *strangerLane) pace() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case r := <-l.refusals:
			l.await(r, timer)
			r.answer()
			continue
		default:
		}
		l.pacing.Store(false)
		if len(l.refusals) == 0 || !l.pacing.CompareAndSwap(false, true) {
			return
		}
	}
}

// await waits for r's turn: a token, or r's deadline if that comes first
// (then the token is not taken), or the lane's stop.
func (l *strangerLane) await(r refusal, timer *time.Timer) {
	now := time.Now()
	res := l.answers.ReserveN(now, 1)
	wait := res.DelayFrom(now)
	if left := r.deadline.Sub(now); !res.OK() || wait > left {
		res.CancelAt(now)
		wait = left
	}
	if wait <= 0 {
		return
	}
	timer.Reset(wait)
	select {
	case <-timer.C:
	case <-l.quit:
		timer.Stop()
	}
}

// errUnregistered is the 401 of a signer that is not a registered user.
func errUnregistered(pub string) *Error {
	return unauthenticated(nil, "%s is not a registered user", pub)
}

// errRevoked is the 401 of a revoked signer.
func errRevoked(pub string) *Error {
	return unauthenticated(nil, "%s is revoked", pub)
}
