package svc

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
)

// answered is one reply a refusal sent.
type answered struct {
	code, message string
	at            time.Time
}

// recorder is a responder that hands its error replies to a channel.
type recorder struct{ answers chan<- answered }

func (r recorder) Respond([]byte, ...micro.RespondOpt) error { return nil }

func (r recorder) Error(code, description string, _ []byte, _ ...micro.RespondOpt) error {
	r.answers <- answered{code: code, message: description, at: time.Now()}
	return nil
}

// testRefusal is a refusal e, due by deadline, answered into answers.
func testRefusal(answers chan<- answered, deadline time.Time, e *Error) refusal {
	s := &service{log: slog.New(slog.DiscardHandler), base: context.Background(), logs: newLogBudget(time.Now())}
	return refusal{
		s: s, ep: &endpoint{}, st: &endpointStats{},
		w: recorder{answers}, start: time.Now(), deadline: deadline, e: e,
	}
}

// testLane is the stranger lane of a limiter with rate and burst, with no
// store.
func testLane(rate float64, burst int) *strangerLane {
	return newLimiter(Config{RateLimit: rate, RateBurst: burst}, time.Now()).strangers
}

// waitAnswer waits for the next answer.
func waitAnswer(t *testing.T, answers <-chan answered) answered {
	t.Helper()
	select {
	case a := <-answers:
		return a
	case <-time.After(20 * time.Second):
		t.Fatal("no answer within 20s")
	}
	return answered{}
}

// TestStrangerLanePaces: refusals are answered at once while the lane's
// bucket (newcomerShare times the rate and burst) has tokens, then one per
// token, in order.
func TestStrangerLanePaces(t *testing.T) {
	l := testLane(1, 1) // 10 a second, in bursts of 10
	defer l.stop()
	answers := make(chan answered, 32)
	later := time.Now().Add(time.Hour)
	start := time.Now()
	for i := range 12 {
		l.refuse(testRefusal(answers, later, unauthenticated(nil, "refusal %d", i)))
	}
	if n := len(answers); n != 10 {
		t.Fatalf("%d refusals answered at once, want the burst of 10", n)
	}
	for i := range 12 {
		a := waitAnswer(t, answers)
		if want := "refusal " + strconv.Itoa(i); a.message != want || a.code != "401" {
			t.Fatalf("answer %d: %s %q, want 401 %q (in order)", i, a.code, a.message, want)
		}
		// Two tokens at 10 a second take 200ms; a loaded machine may take
		// longer, never less.
		if i == 11 && a.at.Sub(start) < 150*time.Millisecond {
			t.Errorf("the 12th refusal was answered after %s, faster than the pace allows", a.at.Sub(start))
		}
	}
}

// TestStrangerLaneBounded: with the refusal queue full, a refusal is
// answered at once with a 429; a queued one is answered at its deadline
// at the latest; stop answers the rest at once.
func TestStrangerLaneBounded(t *testing.T) {
	l := testLane(0.001, 1) // a token every 100s, in bursts of 10
	answers := make(chan answered, refusalQueueLength+64)
	later := time.Now().Add(time.Hour)
	for range 10 {
		l.refuse(testRefusal(answers, later, unauthenticated(nil, "burst")))
	}
	for range 10 {
		waitAnswer(t, answers)
	}
	// The first queued refusal is due soon: the pacer answers it then,
	// with its own answer, without waiting for a token.
	due := time.Now().Add(200 * time.Millisecond)
	l.refuse(testRefusal(answers, due, unauthenticated(nil, "due")))
	if a := waitAnswer(t, answers); a.message != "due" || a.at.Before(due.Add(-time.Millisecond)) {
		t.Fatalf("due refusal: %q at %s, want \"due\" at its deadline %s", a.message, a.at.Format(time.StampMicro), due.Format(time.StampMicro))
	}
	for range refusalQueueLength {
		l.refuse(testRefusal(answers, later, unauthenticated(nil, "queued")))
	}
	// The pacer takes the first of them and waits for its token.
	deadline := time.Now().Add(20 * time.Second)
	for len(l.refusals) != refusalQueueLength-1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d refusals queued, want %d once the pacer took one", len(l.refusals), refusalQueueLength-1)
		}
		time.Sleep(time.Millisecond) // polling the queue the pacer takes from
	}
	if n := len(answers); n != 0 {
		t.Fatalf("%d queued refusals answered before their turn", n)
	}
	l.refuse(testRefusal(answers, later, unauthenticated(nil, "queued")))
	l.refuse(testRefusal(answers, later, unauthenticated(nil, "overflow")))
	a := waitAnswer(t, answers)
	if a.code != "429" || !strings.Contains(a.message, "does not know") || !strings.Contains(a.message, "retry in") {
		t.Fatalf("overflow answered %s %q, want 429 naming unknown identities and a retry", a.code, a.message)
	}
	l.stop()
	if n := len(answers); n != refusalQueueLength+1 {
		t.Fatalf("stop answered %d waiting refusals, want %d", n, refusalQueueLength+1)
	}
	// Once stopped, refusals are answered at once.
	l.refuse(testRefusal(answers, later, unauthenticated(nil, "after")))
	if n := len(answers); n != refusalQueueLength+2 {
		t.Error("refusal after stop not answered at once")
	}
}

// TestStrangerLaneRateOff: with rate limiting off, refusals are not paced.
func TestStrangerLaneRateOff(t *testing.T) {
	l := testLane(-1, 1)
	defer l.stop()
	answers := make(chan answered, 100)
	for range 100 {
		l.refuse(testRefusal(answers, time.Now().Add(time.Hour), unauthenticated(nil, "no")))
	}
	if n := len(answers); n != 100 {
		t.Errorf("%d of 100 refusals answered at once", n)
	}
}

// TestStrangerLaneLookupBounds: the lookup queue is bounded by its bodies'
// bytes and by count; beyond, requests are refused (429) at once, and
// nothing is queued.
func TestStrangerLaneLookupBounds(t *testing.T) {
	l := testLane(50, 100)
	// No goroutine may take the queue: there is no store.
	l.looking.Store(true)
	answers := make(chan answered, 8)
	lookupOf := func(size int) lookup {
		r := testRefusal(answers, time.Now().Add(time.Hour), nil)
		return lookup{s: r.s, ep: r.ep, st: r.st, c: &call{
			body: make([]byte, size), w: r.w, start: time.Now(), deadline: r.deadline, lookup: "UKEY",
		}}
	}
	l.lookup(lookupOf(lookupQueuedBytes / 2))
	l.lookup(lookupOf(lookupQueuedBytes/2 + 1))
	if a := waitAnswer(t, answers); a.code != "429" {
		t.Fatalf("lookup over the byte bound: %s %q, want 429", a.code, a.message)
	}
	if got := l.lookupBytes.Load(); got != lookupQueuedBytes/2 {
		t.Errorf("%d bytes queued, want %d", got, lookupQueuedBytes/2)
	}
	for range lookupQueueLength - 1 {
		l.lookup(lookupOf(0))
	}
	if n := len(answers); n != 0 {
		t.Fatalf("%d lookups refused within the bounds", n)
	}
	l.lookup(lookupOf(0))
	if a := waitAnswer(t, answers); a.code != "429" {
		t.Fatalf("lookup over the count bound: %s %q, want 429", a.code, a.message)
	}
}
