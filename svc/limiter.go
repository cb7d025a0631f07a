package svc

import (
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Bounds of the limiter's memory and the life of what it knows.
const (
	// maxRateKeys bounds the identities that have a bucket of their own
	// in one instance of the services (about 150 bytes each, some 10 MB
	// at most). Beyond it, and until idle buckets are swept, further
	// identities share the newcomers' bucket.
	maxRateKeys = 1 << 16
	// rateIdle is how long a bucket is kept after its last request (at
	// least until it is full again, when dropping it loses nothing). An
	// identity idle for longer is looked up again (AuthEnforce) or shares
	// the newcomers' bucket (AuthSoft, AuthOff) at its next request.
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
	// unregisteredFor is how long a key found unregistered (or revoked)
	// is refused from memory: at least this long and less than twice it
	// (two generations of it are kept). It bounds how long a user added
	// through another instance may be refused by this one; one added
	// through this one is served at once.
	unregisteredFor = 500 * time.Millisecond
	// maxUnregistered bounds the keys of one generation of the
	// unregistered (8 bytes and a flag each, in a map: some 2 MB for both
	// generations). Beyond it further keys are not remembered, only
	// looked up again.
	maxUnregistered = 1 << 15
)

// signerState is what an instance of the services knows of a signer
// before it reads the store.
type signerState int

const (
	// signerUnknown: neither seen registered lately nor found unregistered
	// lately; only the store can tell.
	signerUnknown signerState = iota
	// signerRegistered: found registered and not revoked by a store read
	// within rateIdle. A hint, not an admission: every request still
	// reads the signer's record before it is served.
	signerRegistered
	// signerUnregistered: found unregistered within unregisteredFor.
	signerUnregistered
	// signerRevoked: found revoked within unregisteredFor.
	signerRevoked
)

// String names the state, for tests and logs.
func (s signerState) String() string {
	switch s {
	case signerUnknown:
		return "unknown"
	case signerRegistered:
		return "registered"
	case signerUnregistered:
		return "unregistered"
	case signerRevoked:
		return "revoked"
	}
	return "signerState(" + strconv.Itoa(int(s)) + ")"
}

// limiter is what one instance of the services knows of the identities
// that call it: a token bucket per registered identity (its rate limit),
// and which keys a store read found unregistered or revoked lately.
//
// Rate limits: a bucket per caller public key, refilled at rate tokens
// per second up to burst, one token per request.
//
// In AuthEnforce, only identities a store read found registered get a
// bucket (the ones in the map are thus a view of who is registered,
// used to route requests, never to admit them), and a request whose
// signer is in no view is resolved by the stranger lane (see
// strangerLane), not charged to any bucket. A key found unregistered or
// revoked is remembered, by a seeded 64-bit hash, for unregisteredFor:
// its requests are refused (401) without a signature check or a store
// read. Keys made up by an attacker, however many, thus never reach the
// registered identities' buckets, workers or nonces, and cost bounded
// memory. The refusals of requests no registered signer vouches for are
// paced by the stranger lane's own bucket.
//
// In AuthSoft and AuthOff, as before, an identity without a bucket is
// charged to one bucket that all newcomers share (newcomerShare times
// the rate and burst of one identity), and gets one of its own once a
// request of its completes (remember).
//
// The map of buckets is bounded by maxRateKeys and swept of idle
// buckets; the unregistered keys by maxUnregistered per generation.
//
// A nil *limiter allows everything and knows no signer: every signer is
// then checked as a registered one would be, and every refusal answered
// at once (for tests of the pipeline alone).
type limiter struct {
	// off: Config.RateLimit < 0, every request is allowed; what the
	// limiter knows of signers is kept all the same.
	off   bool
	rate  rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*bucket
	newcomers *rate.Limiter
	lastSweep time.Time

	// seed keys the hashes of unregistered keys, so that nobody can make
	// up a key whose hash is a registered user's.
	seed maphash.Seed
	// unregistered maps the hash of a key found unregistered (false) or
	// revoked (true) since genStart; previous holds the generation
	// before, and both are consulted.
	unregistered, previous map[uint64]bool
	genStart               time.Time

	// strangers takes the requests no registered signer vouches for.
	strangers *strangerLane
}

// bucket is an identity's token bucket and the time of its last request.
type bucket struct {
	*rate.Limiter
	last time.Time
}

// newLimiter returns the limiter of cfg (with its defaults applied): one
// that allows every request when cfg.RateLimit < 0.
func newLimiter(cfg Config, now time.Time) *limiter {
	l := &limiter{
		off:          cfg.RateLimit < 0,
		rate:         rate.Limit(cfg.RateLimit),
		burst:        cfg.RateBurst,
		buckets:      make(map[string]*bucket),
		newcomers:    rate.NewLimiter(rate.Limit(cfg.RateLimit)*newcomerShare, cfg.RateBurst*newcomerShare),
		lastSweep:    now,
		seed:         maphash.MakeSeed(),
		unregistered: make(map[uint64]bool),
		previous:     make(map[uint64]bool),
		genStart:     now,
	}
	l.strangers = newStrangerLane(cfg, l)
	return l
}

// stop stops the stranger lane: what it holds is answered, and its
// goroutines end. Call it once the services have stopped.
func (l *limiter) stop() {
	if l != nil {
		l.strangers.stop()
	}
}

// lookup hands a request of an unknown signer (signerUnknown, which a nil
// limiter never reports) to the stranger lane.
func (l *limiter) lookup(p lookup) { l.strangers.lookup(p) }

// refuseStranger answers r, the refusal of a request that no registered
// signer vouches for, through the stranger lane (at once without one).
func (l *limiter) refuseStranger(r refusal) {
	if l == nil {
		r.answer()
		return
	}
	l.strangers.refuse(r)
}

// signer says what the limiter knows of pub at now, without the store.
// A registered pub's bucket counts as used (it is not swept meanwhile).
func (l *limiter) signer(pub string, now time.Time) signerState {
	if l == nil {
		return signerRegistered
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, found := l.buckets[pub]; found {
		b.last = now
		return signerRegistered
	}
	l.rotate(now)
	h := maphash.String(l.seed, pub)
	revoked, found := l.unregistered[h]
	if !found {
		revoked, found = l.previous[h]
	}
	switch {
	case !found:
		return signerUnknown
	case revoked:
		return signerRevoked
	}
	return signerUnregistered
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
	l.sweepIfDue(now)
	b, found := l.buckets[pub]
	if found {
		b.last = now
	}
	if l.off {
		return 0, !found, true
	}
	if found {
		wait, ok = takeToken(b.Limiter, now)
		return wait, false, ok
	}
	wait, ok = takeToken(l.newcomers, now)
	return wait, true, ok
}

// takeRegistered charges one request of pub, just found registered (by
// a store read, or as signerRegistered), to pub's own bucket, which it
// creates if need be. At maxRateKeys, after a sweep of idle buckets (at
// most every rateSweepFull), a pub that still finds no room is charged
// to the newcomers' bucket.
func (l *limiter) takeRegistered(pub string, now time.Time) (wait time.Duration, newcomer, ok bool) {
	if l == nil {
		return 0, false, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweepIfDue(now)
	b := l.bucketOf(pub, now)
	if l.off {
		return 0, b == nil, true
	}
	if b == nil {
		wait, ok = takeToken(l.newcomers, now)
		return wait, true, ok
	}
	b.last = now
	wait, ok = takeToken(b.Limiter, now)
	return wait, false, ok
}

// remember gives pub, a caller now known to be registered, a bucket of its
// own. A new bucket is charged with the request that take charged to the
// newcomers (AuthSoft, AuthOff); an existing one is left as it is.
func (l *limiter) remember(pub string, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, found := l.buckets[pub]; found {
		return
	}
	if b := l.bucketOf(pub, now); b != nil && !l.off {
		b.AllowN(now, 1)
	}
}

// bucketOf returns pub's bucket, created full if it has none, or nil when
// the map is at maxRateKeys and a sweep (at most every rateSweepFull)
// made no room. A key created here is no longer remembered unregistered.
// The lock is held.
func (l *limiter) bucketOf(pub string, now time.Time) *bucket {
	if b, found := l.buckets[pub]; found {
		return b
	}
	if len(l.buckets) >= maxRateKeys {
		if now.Sub(l.lastSweep) < rateSweepFull {
			return nil
		}
		l.sweep(now)
		if len(l.buckets) >= maxRateKeys {
			return nil
		}
	}
	b := &bucket{Limiter: rate.NewLimiter(l.rate, l.burst), last: now}
	l.buckets[pub] = b
	h := maphash.String(l.seed, pub)
	delete(l.unregistered, h)
	delete(l.previous, h)
	return b
}

// refuse records that a store read found pub unregistered (or revoked):
// it loses its bucket, and signer reports it so for unregisteredFor.
func (l *limiter) refuse(pub string, revoked bool, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.buckets, pub)
	l.rotate(now)
	if len(l.unregistered) >= maxUnregistered {
		return
	}
	l.unregistered[maphash.String(l.seed, pub)] = revoked
}

// recordSeen forgets that pub was found unregistered: a reply of this
// instance carried a record of it, so that its next request reads the
// store again. added says that the reply is the one of users.add, which
// registered pub: then pub gets a bucket (full), so that its first
// requests go the registered identities' way at once.
func (l *limiter) recordSeen(pub string, added bool, now time.Time) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if added {
		l.bucketOf(pub, now)
		return
	}
	h := maphash.String(l.seed, pub)
	delete(l.unregistered, h)
	delete(l.previous, h)
}

// rotate starts a new generation of unregistered keys every
// unregisteredFor, dropping the one before. The lock is held.
func (l *limiter) rotate(now time.Time) {
	switch elapsed := now.Sub(l.genStart); {
	case elapsed < unregisteredFor:
		return
	case elapsed < 2*unregisteredFor:
		l.previous = l.unregistered
	default:
		clear(l.previous)
		clear(l.unregistered)
		l.genStart = now
		return
	}
	l.unregistered = make(map[uint64]bool)
	l.genStart = l.genStart.Add(unregisteredFor)
}

// sweepIfDue sweeps idle buckets every rateSweepEvery. The lock is held.
func (l *limiter) sweepIfDue(now time.Time) {
	if now.Sub(l.lastSweep) >= rateSweepEvery {
		l.sweep(now)
	}
}

// sweep drops the buckets idle for rateIdle and since they filled up.
// The lock is held.
func (l *limiter) sweep(now time.Time) {
	idle := rateIdle
	if !l.off {
		idle = max(idle, time.Duration(float64(l.burst)/float64(l.rate)*float64(time.Second)))
	}
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
