package authcallout

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unibus/unibus/kvstore"
)

// KickDelay is how long after a revocation or an admin change the watcher
// waits before it disconnects the user: the reply to the request that
// made the change is on its way, often to that very user (an admin revoked
// itself or changed its own flag), and a disconnection a few milliseconds
// after the write would lose it. Changes that follow within the delay join
// the same kick rather than postpone it.
const KickDelay = 100 * time.Millisecond

// Defaults of WatcherConfig.
const (
	// DefaultKickWorkers is how many users are kicked at once.
	DefaultKickWorkers = 16
	// DefaultKickAttemptTimeout bounds one attempt to disconnect a user.
	DefaultKickAttemptTimeout = 5 * time.Second
)

// Pauses between two attempts of a revocation whose connections did not
// all close: the first, doubling up to the last.
const (
	revocationRetryFirst = 100 * time.Millisecond
	revocationRetryMax   = 5 * time.Second
)

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	// Store is followed for revocations and admin changes, and read to
	// check that a revocation still holds before it is retried.
	Store *kvstore.Store
	// Kicker disconnects.
	Kicker *Kicker
	// Workers is how many users are kicked at once (DefaultKickWorkers).
	Workers int
	// AttemptTimeout bounds one attempt to disconnect a user
	// (DefaultKickAttemptTimeout). An admin change's kick that runs out of
	// it is given up (logged and counted; the user's JWT expires at
	// Config.UserTTL anyway); a revocation is attempted again, until it
	// sticks or the watcher stops.
	AttemptTimeout time.Duration
	// Logger receives revocations at info level, admin changes at debug
	// level and failures at warn; nil discards them.
	Logger *slog.Logger
}

func (c *WatcherConfig) setDefaults() {
	c.Workers = cmp.Or(c.Workers, DefaultKickWorkers)
	c.AttemptTimeout = cmp.Or(c.AttemptTimeout, DefaultKickAttemptTimeout)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c WatcherConfig) valid() error {
	if c.Store == nil || c.Kicker == nil || c.Kicker.Conn == nil {
		return fmt.Errorf("%w: the watcher needs a store and a kicker with a connection", ErrConfigValidation)
	}
	if c.Workers < 1 || c.AttemptTimeout <= 0 || c.Kicker.Quiet < 0 || c.Kicker.PageSize < 0 || c.Kicker.Backoff < 0 {
		return fmt.Errorf("%w: kick workers, attempt timeout, quiet, page size and backoff must be positive", ErrConfigValidation)
	}
	return nil
}

// WatcherStats counts what a Watcher did since it started.
type WatcherStats struct {
	// Changes counts the revocations and admin changes seen (the only
	// changes the watcher acts on).
	Changes int64
	// Coalesced counts the changes that joined a kick already pending
	// for the same user instead of making one of their own.
	Coalesced int64
	// Attempts counts the attempts to disconnect a user, and Revocations
	// those of them for a revoked (or deleted) user.
	Attempts, Revocations int64
	// Disconnected counts the connections closed.
	Disconnected int64
	// Retried counts the revocation attempts run again because
	// connections remained.
	Retried int64
	// Unkicked counts the connections that an attempt listed last and
	// could not close before its time ran out (a revocation tries again;
	// an admin change's kick gives up).
	Unkicked int64
	// Pending is how many users have a kick waiting or running.
	Pending int64
}

// Watcher turns revocations and admin changes in the store into
// disconnections: a revoked (or deleted) user's connections are all
// closed; a user whose admin flag changed has the connections it made
// before the change closed, so that it reconnects through the callout and
// gets or loses $SRV. Nothing else a user's permissions depend on
// (Permissions): a membership or an invitation changes what the routing
// service delivers, never a connection, so the watcher ignores every
// other change. Clients are expected to reconnect and resubscribe.
//
// Kicks run on a bounded set of workers, so that one user's kick never
// waits for another's. Changes for a user whose kick is still waiting
// join it (the latest change sets the cut-off), so a flood of changes
// makes at most one kick per user in flight and one waiting; a revocation
// cuts short an admin change's kick of the same user in progress. A
// revocation closes every connection of the user, page by page on every
// server, lists them again and retries until none remain or the watcher
// stops; an admin change's kick closes those that started before the
// change, within WatcherConfig.AttemptTimeout.
//
// It owns a dispatcher and the workers, all stopped by Stop.
type Watcher struct {
	cfg    WatcherConfig
	watch  *kvstore.AccessWatcher
	life   context.Context
	cancel context.CancelFunc
	work   chan *kickJob
	done   chan kickResult
	wg     sync.WaitGroup

	changes, coalesced, attempts, revocations atomic.Int64
	disconnected, retried, unkicked, pending  atomic.Int64
}

// StartWatcher follows store changes and kicks through kicker until Stop,
// with the defaults of WatcherConfig.
func StartWatcher(ctx context.Context, store *kvstore.Store, kicker *Kicker, logger *slog.Logger) (*Watcher, error) {
	return StartWatcherWithConfig(ctx, WatcherConfig{Store: store, Kicker: kicker, Logger: logger})
}

// StartWatcherWithConfig follows cfg.Store's revocations and admin
// changes and kicks through cfg.Kicker until Stop (or until ctx ends;
// Stop is still needed to wait).
func StartWatcherWithConfig(ctx context.Context, cfg WatcherConfig) (*Watcher, error) {
	cfg.setDefaults()
	if err := cfg.valid(); err != nil {
		return nil, err
	}
	aw, err := cfg.Store.WatchAccess(ctx)
	if err != nil {
		return nil, fmt.Errorf("start access watcher: %w", err)
	}
	w := &Watcher{cfg: cfg, watch: aw, work: make(chan *kickJob), done: make(chan kickResult)}
	w.life, w.cancel = context.WithCancel(ctx)
	for range cfg.Workers {
		w.wg.Go(w.worker)
	}
	w.wg.Go(w.dispatch)
	return w, nil
}

// Stop stops watching, ends the kicks in progress and waits for every
// goroutine of the watcher.
func (w *Watcher) Stop() {
	w.cancel()
	w.watch.Stop()
	w.wg.Wait()
}

// Stats returns what the watcher did since it started.
func (w *Watcher) Stats() WatcherStats {
	return WatcherStats{
		Changes:      w.changes.Load(),
		Coalesced:    w.coalesced.Load(),
		Attempts:     w.attempts.Load(),
		Revocations:  w.revocations.Load(),
		Disconnected: w.disconnected.Load(),
		Retried:      w.retried.Load(),
		Unkicked:     w.unkicked.Load(),
		Pending:      w.pending.Load(),
	}
}

// kicks reports whether the watcher acts on a change: a revocation or an
// admin change, the only changes of what a connection may do. Anything
// else (a membership change, should the store report one) is ignored.
func kicks(c kvstore.AccessChange) bool {
	return c.Reason == kvstore.ReasonRevoked || c.Reason == kvstore.ReasonAdmin
}

// kickJob is the kick pending for one user: every change seen since its
// last kick began, merged.
type kickJob struct {
	pub    string
	reason string
	// revoke: close every connection, and retry until none remain.
	revoke bool
	// before is the cut-off: the latest change merged.
	before time.Time
	// readyAt is when the kick may start: KickDelay after the first
	// change merged (later ones do not postpone it), or after a pause
	// when a revocation is retried.
	readyAt time.Time
	// attempt counts the attempts already run (revocations).
	attempt int
	// seq orders jobs that are ready at the same time; index is the
	// job's place in the queue.
	seq, index int
	// ctx and cancel bound the attempt in progress.
	ctx    context.Context
	cancel context.CancelFunc
}

// newKickJob is the job for a first change.
func newKickJob(c kvstore.AccessChange) *kickJob {
	j := &kickJob{pub: c.Pub, readyAt: c.At.Add(KickDelay)}
	j.merge(c)
	return j
}

// merge adds a change to the job: the later cut-off wins, and the job
// becomes a revocation if the change is one.
func (j *kickJob) merge(c kvstore.AccessChange) {
	if c.At.After(j.before) {
		j.before = c.At
	}
	if c.Reason == kvstore.ReasonRevoked {
		j.revoke = true
	}
	if !j.revoke || c.Reason == kvstore.ReasonRevoked {
		j.reason = c.Reason
	}
}

// absorb merges a job of later changes into j.
func (j *kickJob) absorb(later *kickJob) {
	j.merge(kvstore.AccessChange{Pub: later.pub, Reason: later.reason, At: later.before})
}

// kickQueue is a heap of jobs by readyAt, first come first.
type kickQueue []*kickJob

func (q kickQueue) Len() int { return len(q) }
func (q kickQueue) Less(a, b int) bool {
	if !q[a].readyAt.Equal(q[b].readyAt) {
		return q[a].readyAt.Before(q[b].readyAt)
	}
	return q[a].seq < q[b].seq
}
func (q kickQueue) Swap(a, b int) {
	q[a], q[b] = q[b], q[a]
	q[a].index, q[b].index = a, b
}
func (q *kickQueue) Push(x any) {
	j := x.(*kickJob)
	j.index = len(*q)
	*q = append(*q, j)
}
func (q *kickQueue) Pop() any {
	old := *q
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	j.index = -1
	return j
}

// kickResult is a worker's report of one attempt.
type kickResult struct {
	job *kickJob
	// settled: nothing is left to do for the job (done, given up, or a
	// revocation that no longer holds).
	settled bool
}

// dispatcher is the state of the dispatch goroutine, which alone owns it.
type dispatcher struct {
	w       *Watcher
	queued  map[string]*kickJob
	running map[string]*runningKick
	queue   kickQueue
	seq     int
}

// runningKick is a job on a worker and the changes seen since it began.
type runningKick struct {
	job  *kickJob
	next *kickJob
}

// dispatch merges changes into pending jobs and hands the first ready job
// to a free worker, until the watcher stops.
func (w *Watcher) dispatch() {
	defer close(w.work)
	d := &dispatcher{w: w, queued: map[string]*kickJob{}, running: map[string]*runningKick{}}
	changes := w.watch.Changes()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, wake := d.next(time.Now())
		var out chan<- *kickJob
		if next != nil {
			out = w.work
			next.ctx, next.cancel = context.WithCancel(w.life)
		}
		if wake > 0 {
			timer.Reset(wake)
		}
		select {
		case c, ok := <-changes:
			if !ok {
				changes = nil
				if w.life.Err() == nil {
					w.cfg.Logger.Error("access watcher ended: later revocations will not disconnect anyone")
				}
				break
			}
			if kicks(c) {
				d.change(c)
			}
		case out <- next:
			d.started(next)
			next = nil
		case r := <-w.done:
			d.finished(r)
		case <-timer.C:
		case <-w.life.Done():
			if next != nil {
				next.cancel()
			}
			return
		}
		if next != nil {
			next.cancel()
		}
		timer.Stop()
		w.pending.Store(int64(len(d.queued) + len(d.running)))
	}
}

// next returns the first ready job, if any; otherwise how long until one
// becomes ready (zero: none waits).
func (d *dispatcher) next(now time.Time) (*kickJob, time.Duration) {
	if len(d.queue) == 0 {
		return nil, 0
	}
	j := d.queue[0]
	if !j.readyAt.After(now) {
		return j, 0
	}
	return nil, j.readyAt.Sub(now)
}

// enqueue queues a job that is not running.
func (d *dispatcher) enqueue(j *kickJob) {
	d.seq++
	j.seq = d.seq
	d.queued[j.pub] = j
	heap.Push(&d.queue, j)
}

// change merges a change into the user's pending job, or makes one. A
// revocation of a user whose admin change's kick is running cuts it
// short.
func (d *dispatcher) change(c kvstore.AccessChange) {
	w := d.w
	w.changes.Add(1)
	if r, ok := d.running[c.Pub]; ok {
		if r.next == nil {
			r.next = newKickJob(c)
		} else {
			r.next.merge(c)
			w.coalesced.Add(1)
		}
		if r.next.revoke && !r.job.revoke {
			r.job.cancel()
		}
		return
	}
	if j, ok := d.queued[c.Pub]; ok {
		w.coalesced.Add(1)
		j.merge(c)
		return
	}
	d.enqueue(newKickJob(c))
}

// started records that a worker took j.
func (d *dispatcher) started(j *kickJob) {
	heap.Remove(&d.queue, j.index)
	delete(d.queued, j.pub)
	d.running[j.pub] = &runningKick{job: j}
}

// finished records a worker's report: a revocation that did not stick is
// queued again after a pause, with whatever changes came meanwhile; else
// those changes make the user's next job.
func (d *dispatcher) finished(r kickResult) {
	j := r.job
	run := d.running[j.pub]
	delete(d.running, j.pub)
	next := run.next
	if !r.settled && j.revoke {
		d.w.retried.Add(1)
		pause := min(revocationRetryFirst<<min(j.attempt-1, 16), revocationRetryMax)
		retry := &kickJob{pub: j.pub, reason: j.reason, revoke: true, before: j.before,
			readyAt: time.Now().Add(pause), attempt: j.attempt}
		if next != nil {
			retry.absorb(next)
			if next.readyAt.Before(retry.readyAt) {
				retry.readyAt = next.readyAt
			}
		}
		next = retry
	}
	if next != nil {
		d.enqueue(next)
	}
}

// worker runs the jobs the dispatcher hands it until the watcher stops.
func (w *Watcher) worker() {
	for j := range w.work {
		settled := w.attempt(j)
		j.cancel()
		select {
		case w.done <- kickResult{job: j, settled: settled}:
		case <-w.life.Done():
			return
		}
	}
}

// attempt runs one attempt of j within the attempt timeout and reports
// whether the job is settled.
func (w *Watcher) attempt(j *kickJob) bool {
	j.attempt++
	w.attempts.Add(1)
	log := w.cfg.Logger.With("pub", j.pub, "reason", j.reason, "attempt", j.attempt)
	ctx, cancel := context.WithTimeout(j.ctx, w.cfg.AttemptTimeout)
	defer cancel()
	before := j.before
	if j.revoke {
		w.revocations.Add(1)
		before = time.Time{} // every connection: the callout admits none after a revocation
		if j.attempt > 1 && !w.stillRevoked(ctx, j.pub) {
			log.Info("revocation no longer holds: not retried")
			return true
		}
	}
	rep, err := w.cfg.Kicker.Disconnect(ctx, j.pub, before)
	w.disconnected.Add(int64(rep.Kicked))
	switch {
	case err == nil && j.revoke:
		log.Info("disconnected revoked user", "kicked", rep.Kicked, "passes", rep.Passes)
		return true
	case err == nil:
		log.Debug("disconnected after admin change", "kicked", rep.Kicked, "passes", rep.Passes)
		return true
	case j.ctx.Err() != nil && w.life.Err() == nil:
		// Cut short by a revocation of the same user, which follows.
		return true
	}
	w.unkicked.Add(int64(rep.Remaining))
	if j.revoke {
		log.Warn("revoked user's connections remain: retrying", "kicked", rep.Kicked, "remaining", rep.Remaining, "err", err)
		return w.life.Err() != nil
	}
	log.Warn("disconnect after admin change: given up", "kicked", rep.Kicked, "remaining", rep.Remaining, "err", err)
	return true
}

// stillRevoked reports whether pub is still revoked or absent. Any error
// counts as revoked: a retry is never dropped on a doubt.
func (w *Watcher) stillRevoked(ctx context.Context, pub string) bool {
	u, err := w.cfg.Store.GetUserFromLeader(ctx, pub)
	if err != nil {
		return true
	}
	return u.Revoked()
}
