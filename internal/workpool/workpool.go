// Package workpool runs jobs on a fixed number of workers behind a bounded
// queue, and answers every job it accepts exactly once and in time: a job
// is run by a worker, or refused at its deadline should no worker take it
// by then (even when every worker is stuck), or refused when the pool
// stops. The pool owns its goroutines (the workers and the deadline
// timers' callbacks); Stop waits for all of them.
package workpool

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Why Submit or a job's Refuse turns a job away.
var (
	// ErrFull: the queue is full, by count or by bytes.
	ErrFull = errors.New("workpool: queue full")
	// ErrStopped: the pool is stopping.
	ErrStopped = errors.New("workpool: stopped")
	// ErrExpired: no worker took the job before its deadline.
	ErrExpired = errors.New("workpool: deadline passed in the queue")
)

// Config sizes a pool.
type Config struct {
	// Workers is the number of jobs run at once (at least one).
	Workers int
	// QueueLength bounds the jobs waiting for a worker.
	QueueLength int
	// MaxQueuedBytes, when positive, bounds the sum of Job.Size of the jobs
	// waiting for a worker.
	MaxQueuedBytes int64
}

// Job is one piece of work.
type Job struct {
	// Run does the work, on a worker.
	Run func()
	// Refuse answers the job instead of Run: with ErrExpired at Deadline,
	// or ErrStopped when the pool stops before a worker took it. It may
	// run before Submit returns, on a goroutine of the pool's.
	Refuse func(reason error)
	// Deadline is when a job still waiting for a worker is refused. A job
	// is never run past it.
	Deadline time.Time
	// Size is the job's weight against Config.MaxQueuedBytes.
	Size int64
}

// Pool is a running pool.
type Pool struct {
	maxBytes int64
	queue    chan *task
	queued   atomic.Int64 // Size of the jobs in queue
	quit     chan struct{}
	wg       sync.WaitGroup // the workers and the pending timers

	// mu orders Submit against Stop: no job is queued once stopped.
	mu      sync.RWMutex
	stopped bool
}

// task is a queued job with its deadline timer; whoever claims it (a
// worker or the timer) answers it.
type task struct {
	Job
	timer   *time.Timer
	claimed atomic.Bool
}

func (t *task) claim() bool { return t.claimed.CompareAndSwap(false, true) }

// New starts the workers of a pool.
func New(cfg Config) *Pool {
	p := &Pool{
		maxBytes: cfg.MaxQueuedBytes,
		queue:    make(chan *task, max(cfg.QueueLength, 0)),
		quit:     make(chan struct{}),
	}
	for range max(cfg.Workers, 1) {
		p.wg.Go(p.work)
	}
	return p
}

// Submit queues j. On nil, exactly one of j.Run and j.Refuse is called,
// Refuse no later than j.Deadline (if no worker is stuck past it, a
// scheduling delay aside). On ErrFull or ErrStopped neither is called:
// the caller answers.
func (p *Pool) Submit(j Job) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.stopped {
		return ErrStopped
	}
	if p.queued.Add(j.Size) > p.maxBytes && p.maxBytes > 0 {
		p.queued.Add(-j.Size)
		return ErrFull
	}
	t := &task{Job: j}
	p.wg.Add(1) // the timer's callback, until it is stopped or has run
	t.timer = time.AfterFunc(time.Until(j.Deadline), func() {
		defer p.wg.Done()
		if t.claim() {
			t.Refuse(ErrExpired)
		}
	})
	select {
	case p.queue <- t:
		return nil
	default:
		p.queued.Add(-j.Size)
		if !t.claim() {
			return nil // the deadline had passed: the timer refused it
		}
		p.stopTimer(t)
		return ErrFull
	}
}

// Stop refuses the jobs still waiting for a worker (ErrStopped), waits
// for those running, and returns when every goroutine of the pool has
// ended. Submit returns ErrStopped from then on. It is safe to call more
// than once and from several goroutines, but not from a job.
func (p *Pool) Stop() {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.quit)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// work is one worker: it takes jobs until Stop, then empties the queue.
func (p *Pool) work() {
	for {
		select {
		case t := <-p.queue:
			p.take(t)
		case <-p.quit:
			for {
				select {
				case t := <-p.queue:
					p.take(t)
				default:
					return
				}
			}
		}
	}
}

// take answers a dequeued task, unless its timer did: it runs it, or
// refuses it if the pool is stopping or its deadline has passed.
func (p *Pool) take(t *task) {
	p.queued.Add(-t.Size)
	if !t.claim() {
		return
	}
	p.stopTimer(t)
	select {
	case <-p.quit:
		t.Refuse(ErrStopped)
		return
	default:
	}
	if !time.Now().Before(t.Deadline) {
		t.Refuse(ErrExpired)
		return
	}
	t.Run()
}

// stopTimer stops the deadline timer of a claimed task.
func (p *Pool) stopTimer(t *task) {
	if t.timer.Stop() {
		p.wg.Done() // its callback will not run
	}
}
