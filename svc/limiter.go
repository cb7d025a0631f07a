package svc

import (
	"sync"
	"time"
)

// Bounds of the rate limiter's memory.
const (
	// maxRateKeys bounds the identities that have a bucket of their own
	// in one instance of the services (about 150 bytes each, some 10 MB
	// at most). Beyond it, and until idle buckets are swept, further
	// identities share the newcomers' bucket.
	maxRateKeys = 1 << 16
	// rateIdle is how long a bucket is kept after its last request (at
	// least until it is full again, when dropping it loses nothing). It
	// also decides who is a newcomer: an identity idle for longer shares
	// the newcomers' bucket for its next request.
	rateIdle = 10 * time.Minute
	// rateSweepEvery is how often idle buckets are swept; the sweep runs
	// inside a request, so that the limiter owns no goroutine.
	rateSweepEvery = time.Minute
	// rateSweepFull is how often, at most, a full map is swept to make
	// room for a newly registered identity.
	rateSweepFull = time.Second
	// newcomerShare sizes the newcomers' bucket: the rate and burst of
	// that many identities.
	newcomerShare = 10
)

// limiter is the per-identity rate limit of one instance of the services:
// a token bucket per caller public key, refilled at rate tokens per second
// up to burst, one token per request.
//
// Only identities known to be registered get a bucket of their own (see
// remember), so that keys made up by an attacker, however many, cost no
// memory: a caller without a bucket is charged to one bucket that all
// newcomers share (newcomerShare times the rate and burst of one
// identity). That bucket bounds how fast unknown identities make the
// services read the store; while it is empty, a registered identity's
// first request after rateIdle of silence may also be refused (with a
// retry hint, as always). The map is bounded by maxRateKeys and swept of
// idle buckets.
//
// A nil *limiter (Config.RateLimit < 0) allows everything.
type limiter struct {
	rate, burst float64

	mu        sync.Mutex
	buckets   map[string]*bucket
	newcomers bucket
	lastSweep time.Time
}

// bucket is a token bucket: tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

// newLimiter returns the limiter of cfg (with its defaults applied), nil
// when rate limiting is off.
func newLimiter(cfg Config, now time.Time) *limiter {
	if cfg.RateLimit < 0 {
		return nil
	}
	l := &limiter{
		rate:      cfg.RateLimit,
		burst:     float64(cfg.RateBurst),
		buckets:   make(map[string]*bucket),
		lastSweep: now,
	}
	l.newcomers = bucket{tokens: l.burst * newcomerShare, last: now}
	return l
}

// take charges one request of pub at now: to pub's bucket, or (newcomer)
// to the newcomers' bucket when pub has none. When the bucket is empty the
// request is refused (!ok) and wait is how long until it holds a token
// again.
func (l *limiter) take(pub string, now time.Time) (wait time.Duration, newcomer, ok bool) {
	if l == nil {
		return 0, false, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= rateSweepEvery {
		l.sweep(now)
	}
	if b, found := l.buckets[pub]; found {
		wait, ok = b.take(now, l.rate, l.burst)
		return wait, false, ok
	}
	wait, ok = l.newcomers.take(now, l.rate*newcomerShare, l.burst*newcomerShare)
	return wait, true, ok
}

// remember gives pub, a caller now known to be registered, a bucket of its
// own, charged with the request that take charged to the newcomers. At
// maxRateKeys it sweeps idle buckets first (at most every rateSweepFull)
// and, if none was idle, leaves pub with the newcomers.
func (l *limiter) remember(pub string, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, found := l.buckets[pub]; found {
		return
	}
	if len(l.buckets) >= maxRateKeys {
		if now.Sub(l.lastSweep) < rateSweepFull {
			return
		}
		l.sweep(now)
		if len(l.buckets) >= maxRateKeys {
			return
		}
	}
	l.buckets[pub] = &bucket{tokens: l.burst - 1, last: now}
}

// sweep drops the buckets idle for rateIdle and since they filled up.
// The lock is held.
func (l *limiter) sweep(now time.Time) {
	idle := max(rateIdle, time.Duration(l.burst/l.rate*float64(time.Second)))
	for pub, b := range l.buckets {
		if now.Sub(b.last) >= idle {
			delete(l.buckets, pub)
		}
	}
	l.lastSweep = now
}

// size returns the number of identities with a bucket (for tests).
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// take refills b for the time since its last request and takes a token.
func (b *bucket) take(now time.Time, rate, burst float64) (time.Duration, bool) {
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens = min(burst, b.tokens+elapsed.Seconds()*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second)), false
}

// Budget of the refusals a service logs above debug level, so that a flood
// (unsigned requests, a saturated pool, a failing store) cannot flood the
// log: logBudgetRate a second, in bursts of logBudgetBurst. The rest are
// logged at debug, and counted in the stats as always.
const (
	logBudgetRate  = 10
	logBudgetBurst = 50
)

// logBudget is a token bucket for log lines.
type logBudget struct {
	mu sync.Mutex
	b  bucket
}

func newLogBudget(now time.Time) *logBudget {
	return &logBudget{b: bucket{tokens: logBudgetBurst, last: now}}
}

// allow takes a token at now, if there is one.
func (l *logBudget) allow(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.b.take(now, logBudgetRate, logBudgetBurst)
	return ok
}
