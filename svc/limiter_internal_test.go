package svc

import (
	"strconv"
	"testing"
	"time"
)

func testLimiter(rate float64, burst int, now time.Time) *limiter {
	return newLimiter(Config{RateLimit: rate, RateBurst: burst}, now)
}

// TestLimiterBuckets: a remembered identity has its own bucket of burst
// tokens refilled at rate; once empty it is refused with the wait until
// its next token, while another identity is not affected.
func TestLimiterBuckets(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := testLimiter(10, 5, t0)
	for _, pub := range []string{"noisy", "quiet"} {
		if _, newcomer, ok := l.take(pub, t0); !ok || !newcomer {
			t.Fatalf("%s: first request ok=%v newcomer=%v, want a newcomer let through", pub, ok, newcomer)
		}
		l.remember(pub, t0)
	}
	// The first request was charged: burst-1 left.
	for i := range 4 {
		if _, newcomer, ok := l.take("noisy", t0); !ok || newcomer {
			t.Fatalf("request %d: ok=%v newcomer=%v, want allowed from its own bucket", i+2, ok, newcomer)
		}
	}
	wait, _, ok := l.take("noisy", t0)
	if ok {
		t.Fatal("request over the burst allowed")
	}
	if wait != 100*time.Millisecond {
		t.Errorf("wait %s, want 100ms (one token at 10/s)", wait)
	}
	if _, _, ok := l.take("quiet", t0); !ok {
		t.Error("another identity refused because of the noisy one")
	}
	// Half a token later: still refused, with half the wait.
	if wait, _, ok := l.take("noisy", t0.Add(50*time.Millisecond)); ok || wait != 50*time.Millisecond {
		t.Errorf("after 50ms: ok=%v wait=%s, want refused, 50ms", ok, wait)
	}
	if _, _, ok := l.take("noisy", t0.Add(100*time.Millisecond)); !ok {
		t.Error("refused once a token was refilled")
	}
	// Refill caps at burst.
	later := t0.Add(2 * time.Second)
	for i := range 5 {
		if _, _, ok := l.take("quiet", later); !ok {
			t.Fatalf("after 2s, request %d refused", i+1)
		}
	}
	if _, _, ok := l.take("quiet", later); ok {
		t.Error("the bucket refilled beyond its burst")
	}
}

// TestLimiterNewcomers: in AuthSoft and AuthOff, identities without a
// bucket share one, so that made-up keys, however many, cost no memory
// and are limited together.
func TestLimiterNewcomers(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := testLimiter(1, 2, t0)
	shared := 2 * newcomerShare
	for i := range shared {
		if _, newcomer, ok := l.take("stranger-"+strconv.Itoa(i), t0); !ok || !newcomer {
			t.Fatalf("stranger %d: ok=%v newcomer=%v", i, ok, newcomer)
		}
	}
	wait, newcomer, ok := l.take("one-more", t0)
	if ok || !newcomer || wait <= 0 {
		t.Fatalf("past the newcomers' burst: ok=%v newcomer=%v wait=%s, want refused with a wait", ok, newcomer, wait)
	}
	if n := l.size(); n != 0 {
		t.Errorf("%d buckets for identities never remembered", n)
	}
	// A remembered identity is no longer a newcomer.
	l.remember("member", t0)
	if _, newcomer, ok := l.take("member", t0); !ok || newcomer {
		t.Errorf("remembered identity: ok=%v newcomer=%v", ok, newcomer)
	}
}

// TestLimiterBounded: idle buckets are swept, and the map never grows past
// maxRateKeys.
func TestLimiterBounded(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := testLimiter(50, 100, t0)
	for i := range maxRateKeys {
		l.remember("user-"+strconv.Itoa(i), t0)
	}
	l.remember("one-too-many", t0.Add(2*rateSweepFull))
	if n := l.size(); n != maxRateKeys {
		t.Fatalf("%d buckets, want the bound %d", n, maxRateKeys)
	}
	if _, newcomer, _ := l.take("one-too-many", t0.Add(2*rateSweepFull)); !newcomer {
		t.Error("an identity past the bound got a bucket")
	}
	// Keep one identity busy; after rateIdle the others are swept.
	busy := t0.Add(rateIdle - time.Minute)
	if _, _, ok := l.take("user-0", busy); !ok {
		t.Fatal("refused")
	}
	l.take("anyone", t0.Add(rateIdle+time.Second))
	if n := l.size(); n != 1 {
		t.Errorf("%d buckets after the idle ones were swept, want 1 (the busy one)", n)
	}
}

// TestLimiterOff: a negative rate allows everything, and the limiter
// still knows which signers are registered and which are not.
func TestLimiterOff(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := testLimiter(-1, 1, t0)
	for range 1000 {
		if _, _, ok := l.take("anyone", t0); !ok {
			t.Fatal("refused with rate limiting off")
		}
		if _, _, ok := l.takeRegistered("member", t0); !ok {
			t.Fatal("registered identity refused with rate limiting off")
		}
	}
	l.remember("anyone", t0)
	if got := l.signer("member", t0); got != signerRegistered {
		t.Errorf("member: %v, want registered", got)
	}
	l.refuse("stranger", false, t0)
	if got := l.signer("stranger", t0); got != signerUnregistered {
		t.Errorf("stranger: %v, want unregistered", got)
	}
}

// TestLimiterNil: a nil limiter allows everything, knows every signer as
// one to check, and answers refusals at once.
func TestLimiterNil(t *testing.T) {
	var l *limiter
	now := time.Now()
	if _, _, ok := l.take("anyone", now); !ok {
		t.Error("take refused")
	}
	if _, _, ok := l.takeRegistered("anyone", now); !ok {
		t.Error("takeRegistered refused")
	}
	if got := l.signer("anyone", now); got != signerRegistered {
		t.Errorf("signer %v, want registered (checked as such)", got)
	}
	l.remember("anyone", now)
	l.refuse("anyone", false, now)
	l.recordSeen("anyone", true, now)
	answers := make(chan answered, 1)
	l.refuseStranger(testRefusal(answers, time.Now().Add(time.Hour), unauthenticated(nil, "no")))
	select {
	case a := <-answers:
		if a.code != "401" {
			t.Errorf("answered %s, want 401", a.code)
		}
	default:
		t.Error("refusal not answered at once")
	}
	l.stop()
}

// TestLimiterSigners: what a store read found is remembered: registered
// identities by their bucket, unregistered and revoked keys for at least
// unregisteredFor and less than twice it; a bucket, or a reply that shows
// a record, clears a key found unregistered.
func TestLimiterSigners(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := testLimiter(10, 5, t0)
	if got := l.signer("stranger", t0); got != signerUnknown {
		t.Fatalf("new key: %v, want unknown", got)
	}
	l.refuse("stranger", false, t0)
	l.refuse("revoked", true, t0)
	for _, at := range []time.Duration{0, unregisteredFor - time.Nanosecond, unregisteredFor, 2*unregisteredFor - time.Nanosecond} {
		if got := l.signer("stranger", t0.Add(at)); got != signerUnregistered {
			t.Errorf("stranger after %s: %v, want unregistered", at, got)
		}
		if got := l.signer("revoked", t0.Add(at)); got != signerRevoked {
			t.Errorf("revoked after %s: %v, want revoked", at, got)
		}
	}
	later := t0.Add(2 * unregisteredFor)
	for _, pub := range []string{"stranger", "revoked"} {
		if got := l.signer(pub, later); got != signerUnknown {
			t.Errorf("%s after %s: %v, want unknown (looked up again)", pub, 2*unregisteredFor, got)
		}
	}
	// Long silences drop both generations.
	l.refuse("stranger", false, later)
	if got := l.signer("stranger", later.Add(time.Hour)); got != signerUnknown {
		t.Errorf("after an hour: %v, want unknown", got)
	}

	// A registered identity is charged to its own bucket, made on first
	// use; found unregistered later (revoked), it loses it.
	now := later.Add(time.Hour)
	for i := range 5 {
		if _, newcomer, ok := l.takeRegistered("member", now); !ok || newcomer {
			t.Fatalf("request %d: ok=%v newcomer=%v, want allowed from its own bucket", i+1, ok, newcomer)
		}
	}
	if wait, _, ok := l.takeRegistered("member", now); ok || wait != 100*time.Millisecond {
		t.Errorf("over the burst: ok=%v wait=%s, want refused, 100ms", ok, wait)
	}
	if got := l.signer("member", now); got != signerRegistered {
		t.Errorf("member: %v, want registered", got)
	}
	l.refuse("member", true, now)
	if got := l.signer("member", now); got != signerRevoked {
		t.Errorf("member found revoked: %v, want revoked", got)
	}
	if n := l.size(); n != 0 {
		t.Errorf("%d buckets, want none", n)
	}

	// A reply carrying a key's record clears it; the reply of users.add
	// makes it registered at once.
	l.refuse("newcomer", false, now)
	l.recordSeen("newcomer", false, now)
	if got := l.signer("newcomer", now); got != signerUnknown {
		t.Errorf("after a reply with its record: %v, want unknown", got)
	}
	l.refuse("newcomer", false, now)
	l.recordSeen("newcomer", true, now)
	if got := l.signer("newcomer", now); got != signerRegistered {
		t.Errorf("after users.add: %v, want registered", got)
	}
	if _, newcomer, ok := l.takeRegistered("newcomer", now); !ok || newcomer {
		t.Errorf("added identity: ok=%v newcomer=%v, want its own full bucket", ok, newcomer)
	}
}

// TestLimiterUnregisteredBounded: one generation remembers at most
// maxUnregistered keys; beyond, keys are looked up again.
func TestLimiterUnregisteredBounded(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := testLimiter(50, 100, t0)
	for i := range maxUnregistered + 10 {
		l.refuse("stranger-"+strconv.Itoa(i), false, t0)
	}
	if got := l.signer("stranger-0", t0); got != signerUnregistered {
		t.Errorf("first key: %v, want unregistered", got)
	}
	if got := l.signer("stranger-"+strconv.Itoa(maxUnregistered+5), t0); got != signerUnknown {
		t.Errorf("key beyond the bound: %v, want unknown", got)
	}
	l.mu.Lock()
	n := len(l.unregistered) + len(l.previous)
	l.mu.Unlock()
	if n != maxUnregistered {
		t.Errorf("%d keys remembered, want the bound %d", n, maxUnregistered)
	}
}

// TestLogBudget: refusals are logged above debug level in bursts of
// logBudgetBurst, then at logBudgetRate a second.
func TestLogBudget(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := newLogBudget(t0)
	for i := range logBudgetBurst {
		if !l.allow(t0) {
			t.Fatalf("line %d of the burst refused", i+1)
		}
	}
	if l.allow(t0) {
		t.Fatal("a line beyond the burst allowed")
	}
	if !l.allow(t0.Add(time.Second / logBudgetRate)) {
		t.Fatal("no line allowed once the budget refilled")
	}
}

// size returns the number of identities with a bucket.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
