package workpool_test

import (
	"errors"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unibus/unibus/internal/workpool"
)

// later is a deadline no test reaches.
func later() time.Time { return time.Now().Add(time.Hour) }

// blocker is a job that signals when it starts and runs until released.
type blocker struct {
	started, release, done chan struct{}
}

func newBlocker() *blocker {
	return &blocker{started: make(chan struct{}), release: make(chan struct{}), done: make(chan struct{})}
}

func (b *blocker) job(t *testing.T) workpool.Job {
	return workpool.Job{
		Run: func() {
			close(b.started)
			<-b.release
			close(b.done)
		},
		Refuse:   func(err error) { t.Errorf("blocking job refused: %v", err) },
		Deadline: later(),
	}
}

// outcome records how a job was answered.
type outcome struct {
	runs, refusals atomic.Int32
	reason         chan error    // the first refusal
	ran            chan struct{} // the first run
}

func newOutcome() *outcome {
	return &outcome{reason: make(chan error, 1), ran: make(chan struct{}, 1)}
}

func (o *outcome) job(deadline time.Time, size int64) workpool.Job {
	return workpool.Job{
		Run: func() {
			if o.runs.Add(1) == 1 {
				o.ran <- struct{}{}
			}
		},
		Refuse: func(err error) {
			if o.refusals.Add(1) == 1 {
				o.reason <- err
			}
		},
		Deadline: deadline,
		Size:     size,
	}
}

func (o *outcome) answers() int32 { return o.runs.Load() + o.refusals.Load() }

// TestSaturation: with the only worker busy and the queue full, by count
// or by bytes, Submit refuses at once and calls neither Run nor Refuse.
func TestSaturation(t *testing.T) {
	p := workpool.New(workpool.Config{Workers: 1, QueueLength: 1, MaxQueuedBytes: 10})
	defer p.Stop()
	b := newBlocker()
	if err := p.Submit(b.job(t)); err != nil {
		t.Fatal(err)
	}
	<-b.started

	tooBig := newOutcome()
	if err := p.Submit(tooBig.job(later(), 11)); !errors.Is(err, workpool.ErrFull) {
		t.Fatalf("job over the byte bound: %v, want ErrFull", err)
	}
	queued := newOutcome()
	if err := p.Submit(queued.job(later(), 10)); err != nil {
		t.Fatalf("job that fits: %v", err)
	}
	full := newOutcome()
	if err := p.Submit(full.job(later(), 0)); !errors.Is(err, workpool.ErrFull) {
		t.Fatalf("job beyond the queue length: %v, want ErrFull", err)
	}
	close(b.release)
	<-queued.ran
	p.Stop()
	if n := tooBig.answers() + full.answers(); n != 0 {
		t.Errorf("refused jobs answered %d times, want 0", n)
	}
	if queued.runs.Load() != 1 || queued.refusals.Load() != 0 {
		t.Errorf("queued job: %d runs, %d refusals; want it run once", queued.runs.Load(), queued.refusals.Load())
	}
}

// TestDeadline: a job still queued at its deadline is refused then, with
// the workers stuck, and not run when a worker frees up.
func TestDeadline(t *testing.T) {
	p := workpool.New(workpool.Config{Workers: 1, QueueLength: 4})
	defer p.Stop()
	b := newBlocker()
	if err := p.Submit(b.job(t)); err != nil {
		t.Fatal(err)
	}
	<-b.started
	o := newOutcome()
	if err := p.Submit(o.job(time.Now().Add(10*time.Millisecond), 0)); err != nil {
		t.Fatal(err)
	}
	if err := <-o.reason; !errors.Is(err, workpool.ErrExpired) {
		t.Fatalf("refused with %v, want ErrExpired", err)
	}
	close(b.release)
	p.Stop() // the worker has dequeued the expired job by now
	if o.runs.Load() != 0 || o.refusals.Load() != 1 {
		t.Errorf("%d runs, %d refusals; want one refusal", o.runs.Load(), o.refusals.Load())
	}
}

// TestPastDeadline: a job submitted past its deadline is refused, never
// run, even with a worker free.
func TestPastDeadline(t *testing.T) {
	p := workpool.New(workpool.Config{Workers: 1, QueueLength: 1})
	o := newOutcome()
	if err := p.Submit(o.job(time.Now().Add(-time.Second), 0)); err != nil {
		t.Fatal(err)
	}
	if err := <-o.reason; !errors.Is(err, workpool.ErrExpired) {
		t.Fatalf("refused with %v, want ErrExpired", err)
	}
	p.Stop()
	if o.runs.Load() != 0 || o.refusals.Load() != 1 {
		t.Errorf("%d runs, %d refusals; want one refusal", o.runs.Load(), o.refusals.Load())
	}
}

// TestExactlyOnce races deadlines against free workers: every accepted
// job is answered exactly once, refused ones never.
func TestExactlyOnce(t *testing.T) {
	p := workpool.New(workpool.Config{Workers: 4, QueueLength: 64})
	const n = 2000
	outcomes := make([]*outcome, n)
	accepted := make([]bool, n)
	for i := range n {
		outcomes[i] = newOutcome()
		// Deadlines from the past to a millisecond ahead.
		deadline := time.Now().Add(time.Duration(i%11-5) * 200 * time.Microsecond)
		err := p.Submit(outcomes[i].job(deadline, 1))
		switch {
		case err == nil:
			accepted[i] = true
		case !errors.Is(err, workpool.ErrFull):
			t.Fatalf("job %d: %v", i, err)
		}
	}
	p.Stop()
	for i, o := range outcomes {
		want := int32(0)
		if accepted[i] {
			want = 1
		}
		if got := o.answers(); got != want {
			t.Fatalf("job %d (accepted %v) answered %d times, want %d", i, accepted[i], got, want)
		}
	}
}

// TestStop: Stop refuses the queued jobs, waits for the running one, and
// the pool accepts nothing more.
func TestStop(t *testing.T) {
	p := workpool.New(workpool.Config{Workers: 1, QueueLength: 1})
	b := newBlocker()
	if err := p.Submit(b.job(t)); err != nil {
		t.Fatal(err)
	}
	<-b.started
	queued := newOutcome()
	if err := p.Submit(queued.job(later(), 0)); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		p.Stop()
		close(stopped)
	}()
	// Wait until Stop has begun: Submit says so (the full queue answered
	// ErrFull until then).
	for {
		err := p.Submit(newOutcome().job(later(), 0))
		if errors.Is(err, workpool.ErrStopped) {
			break
		}
		if !errors.Is(err, workpool.ErrFull) {
			t.Fatalf("submit while stopping: %v", err)
		}
		runtime.Gosched()
	}
	select {
	case <-stopped:
		t.Fatal("Stop returned while a job was running")
	default:
	}
	close(b.release)
	<-stopped
	select {
	case <-b.done:
	default:
		t.Fatal("Stop returned before the running job ended")
	}
	if err := <-queued.reason; !errors.Is(err, workpool.ErrStopped) {
		t.Fatalf("queued job refused with %v, want ErrStopped", err)
	}
	if queued.runs.Load() != 0 {
		t.Error("a queued job ran after Stop")
	}
	p.Stop() // again: a no-op
	if err := p.Submit(newOutcome().job(later(), 0)); !errors.Is(err, workpool.ErrStopped) {
		t.Errorf("submit after Stop: %v, want ErrStopped", err)
	}
}
