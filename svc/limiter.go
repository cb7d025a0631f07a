package svc

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
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
	rate  rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*bucket
	newcomers *rate.Limiter
	lastSweep time.Time
}

// bucket is an identity's token bucket and the time of its last request.
type bucket struct {
	*rate.Limiter
	last time.Time
}

// newLimiter returns the limiter of cfg (with its defaults applied), nil
// when rate limiting is off.
func newLimiter(cfg Config, now time.Time) *limiter {
	if cfg.RateLimit < 0 {
		return nil
	}
	return &limiter{
		rate:      rate.Limit(cfg.RateLimit),
		burst:     cfg.RateBurst,
		buckets:   make(map[string]*bucket),
		newcomers: rate.NewLimiter(rate.Limit(cfg.RateLimit)*newcomerShare, cfg.RateBurst*newcomerShare),
		lastSweep: now,
	}
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
		b.last = now
		wait, ok = takeToken(b.Limiter, now)
		return wait, false, ok
	}
	wait, ok = takeToken(l.newcomers, now)
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
	b := &bucket{Limiter: rate.NewLimiter(l.rate, l.burst), last: now}
	b.AllowN(now, 1)
	l.buckets[pub] = b
}

// sweep drops the buckets idle for rateIdle and since they filled up.
// The lock is held.
func (l *limiter) sweep(now time.Time) {
	idle := max(rateIdle, time.Duration(float64(l.burst)/float64(l.rate)*float64(time.Second)))
	for pub, b := range l.buckets {
		if now.Sub(b.last) >= idle {
			delete(l.buckets, pub)
		}
	}
	l.lastSweep = now
}

// takeToken takes a token of lim at now or, if it has none, returns how
// long until it has one.
func takeToken(lim *rate.Limiter, now time.Time) (time.Duration, bool) {
	if lim.AllowN(now, 1) {
		return 0, true
	}
	return time.Duration((1 - lim.TokensAt(now)) / float64(lim.Limit()) * float64(time.Second)), false
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
type logBudget struct{ *rate.Limiter }

func newLogBudget(time.Time) *logBudget {
	return &logBudget{rate.NewLimiter(logBudgetRate, logBudgetBurst)}
}

// allow takes a token at now, if there is one.
func (l *logBudget) allow(now time.Time) bool { return l.AllowN(now, 1) }
