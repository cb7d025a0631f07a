package router

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Bounds of the send limiter's memory.
const (
	// maxSenders bounds the members that have a bucket of their own in one
	// router instance (about 150 bytes each). Only members get one (the
	// membership check comes first), so the bound is rarely met; when it
	// is, buckets idle for a while are dropped, and should none be, a new
	// sender is refused (429) until one is.
	maxSenders = 1 << 16
	// senderIdle is how long a bucket is kept after its last send once it
	// is full again (dropping a full bucket loses nothing).
	senderIdle = time.Minute
	// sweepEvery is how often idle buckets are swept; the sweep runs
	// inside a send, so that the limiter owns no goroutine.
	sweepEvery = time.Minute
	// sweepFull is how often, at most, a full map is swept to make room.
	sweepFull = time.Second
)

// sendLimiter is a token bucket per sender, in a bounded map. It is safe
// for concurrent use.
type sendLimiter struct {
	limit rate.Limit // negative: off
	burst int

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	*rate.Limiter
	last time.Time
}

func newSendLimiter(perSecond float64, burst int, now time.Time) *sendLimiter {
	return &sendLimiter{limit: rate.Limit(perSecond), burst: burst, buckets: map[string]*bucket{}, lastSweep: now}
}

// take takes one token of pub's bucket at now or, if it has none, returns
// how long until it has one.
func (l *sendLimiter) take(pub string, now time.Time) (time.Duration, bool) {
	if l.limit < 0 {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweep(now)
	}
	b, ok := l.buckets[pub]
	if !ok {
		if len(l.buckets) >= maxSenders && now.Sub(l.lastSweep) >= sweepFull {
			l.sweep(now)
		}
		if len(l.buckets) >= maxSenders {
			return sweepFull, false
		}
		b = &bucket{Limiter: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[pub] = b
	}
	b.last = now
	if b.AllowN(now, 1) {
		return 0, true
	}
	return time.Duration((1 - b.TokensAt(now)) / float64(l.limit) * float64(time.Second)), false
}

// sweep drops the buckets that are full again and idle for senderIdle.
func (l *sendLimiter) sweep(now time.Time) {
	for pub, b := range l.buckets {
		if now.Sub(b.last) >= senderIdle && b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, pub)
		}
	}
	l.lastSweep = now
}
