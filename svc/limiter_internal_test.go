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

// TestLimiterNewcomers: identities without a bucket share one, so that
// made-up keys, however many, cost no memory and are limited together.
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

// TestLimiterOff: a negative rate turns the limiter off.
func TestLimiterOff(t *testing.T) {
	l := testLimiter(-1, 1, time.Now())
	if l != nil {
		t.Fatal("limiter on with a negative rate")
	}
	for range 1000 {
		if _, _, ok := l.take("anyone", time.Now()); !ok {
			t.Fatal("refused with rate limiting off")
		}
	}
	l.remember("anyone", time.Now())
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
