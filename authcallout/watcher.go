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

// KickDelay is how long after an access change the watcher waits before it
// disconnects the user: the reply to the request that made the change is
// on its way, often to that very user (it created or left a room, an admin
// revoked itself), and a disconnection a few milliseconds after the write
// would lose it. Changes that follow within the delay join the same kick
// rather than postpone it.
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
	// Store is followed for access changes, and read to check that a
	// revocation still holds before it is retried.
	Store *kvstore.Store
	// Kicker disconnects.
	Kicker *Kicker
	// Workers is how many users are kicked at once (DefaultKickWorkers).
	// Membership and admin refreshes use at most all but one of them, so
	// that a revocation never waits for a worker behind a flood.
	Workers int
	// AttemptTimeout bounds one attempt to disconnect a user
	// (DefaultKickAttemptTimeout). A refresh that runs out of it is given
	// up (logged and counted; the user's JWT expires at Config.UserTTL
	// anyway); a revocation is attempted again, until it sticks or the
	// watcher stops.
	AttemptTimeout time.Duration
	// Logger receives revocations at info level, refreshes at debug level
	// and failures at warn; nil discards them.
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
	// Changes counts the access changes seen.
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
	// a refresh gives up).
	Unkicked int64
	// Pending is how many users have a kick waiting or running.
	Pending int64
}

// Watcher turns access changes in the store into disconnections: a revoked
// user's connections are closed; a user whose rooms or admin flag changed
// is disconnected so that it reconnects through the callout and gets its
// new permissions. Clients are expected to reconnect and resubscribe.
//
// Kicks run on a bounded set of workers, so that one user's kick never
// waits for another's. Changes for a user whose kick is still waiting
// join it (the latest change sets the cut-off), so a flood of changes
// makes at most one kick per user in flight and one waiting. Revocations
// (and admin changes) go before membership refreshes and have a worker of
// their own. A revocation closes every connection of the user, page by
// page on every server, lists them again and retries until none remain
// or the watcher stops; a refresh closes those that started before the
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

// StartWatcherWithConfig follows cfg.Store's access changes and kicks
// through cfg.Kicker until Stop (or until ctx ends; Stop is still needed
// to wait).
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

// kickJob is the kick pending for one user: every change seen since its
// last kick began, merged.
type kickJob struct {
	pub    string
	reason string
	// revoke: close every connection, and retry until none remain.
	revoke bool
	// urgent: a revocation or an admin change, which no other user can
	// cause, goes before membership refreshes.
	urgent bool
	// before is the cut-off: the latest change merged.
	before time.Time
	// readyAt is when the kick may start: KickDelay after the first
	// change merged (later ones do not postpone it), or after a pause
	// when a revocation is retried.
	readyAt time.Time
	// attempt counts the attempts already run (revocations).
	attempt int
	// seq orders jobs that are ready at the same time; index is the
	// job's place in its queue.
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
// becomes a revocation or urgent if the change is.
func (j *kickJob) merge(c kvstore.AccessChange) {
	if c.At.After(j.before) {
		j.before = c.At
	}
	switch c.Reason {
	case kvstore.ReasonRevoked:
		j.revoke, j.urgent, j.reason = true, true, c.Reason
	case kvstore.ReasonMembership:
		j.reason = cmp.Or(j.reason, c.Reason)
	default: // an admin change, or anything not a plain membership change
		j.urgent = true
		if !j.revoke {
			j.reason = c.Reason
		}
	}
}

// absorb merges a job of later changes into j.
func (j *kickJob) absorb(later *kickJob) {
	j.merge(kvstore.AccessChange{Pub: later.pub, Reason: later.reason, At: later.before})
	j.revoke = j.revoke || later.revoke
	j.urgent = j.urgent || later.urgent
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
	urgent  kickQueue
	routine kickQueue
	// routineRunning counts the refreshes on workers.
	routineRunning int
	seq            int
}

// runningKick is a job on a worker and the changes seen since it began.
type runningKick struct {
	job  *kickJob
	next *kickJob
}

// dispatch merges changes into pending jobs and hands the most urgent
// ready job to a free worker, until the watcher stops.
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
					w.cfg.Logger.Error("access watcher ended: later access changes will not disconnect anyone")
				}
				break
			}
			d.change(c)
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

// next returns the job to hand out now, if any: the first ready urgent
// job, else (while a worker stays free for urgent ones) the first ready
// refresh. Otherwise it returns how long until a job becomes ready (zero:
// none waits).
func (d *dispatcher) next(now time.Time) (*kickJob, time.Duration) {
	var wake time.Duration
	consider := func(q kickQueue) *kickJob {
		if len(q) == 0 {
			return nil
		}
		if j := q[0]; !j.readyAt.After(now) {
			return j
		} else if until := j.readyAt.Sub(now); wake == 0 || until < wake {
			wake = until
		}
		return nil
	}
	if j := consider(d.urgent); j != nil {
		return j, 0
	}
	if d.routineRunning < max(d.w.cfg.Workers-1, 1) {
		if j := consider(d.routine); j != nil {
			return j, 0
		}
	}
	return nil, wake
}

// enqueue queues a job that is not running.
func (d *dispatcher) enqueue(j *kickJob) {
	d.seq++
	j.seq = d.seq
	d.queued[j.pub] = j
	if j.urgent {
		heap.Push(&d.urgent, j)
	} else {
		heap.Push(&d.routine, j)
	}
}

// change merges an access change into the user's pending job, or makes
// one. A revocation of a user whose refresh is running cuts it short.
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
	j, ok := d.queued[c.Pub]
	if !ok {
		d.enqueue(newKickJob(c))
		return
	}
	w.coalesced.Add(1)
	wasUrgent := j.urgent
	j.merge(c)
	if j.urgent && !wasUrgent {
		heap.Remove(&d.routine, j.index)
		heap.Push(&d.urgent, j)
	}
}

// started records that a worker took j.
func (d *dispatcher) started(j *kickJob) {
	if j.urgent {
		heap.Remove(&d.urgent, j.index)
	} else {
		heap.Remove(&d.routine, j.index)
		d.routineRunning++
	}
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
	if !j.urgent {
		d.routineRunning--
	}
	next := run.next
	if !r.settled && j.revoke {
		d.w.retried.Add(1)
		pause := min(revocationRetryFirst<<min(j.attempt-1, 16), revocationRetryMax)
		retry := &kickJob{pub: j.pub, reason: j.reason, revoke: true, urgent: true, before: j.before,
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
		log.Debug("disconnected after access change", "kicked", rep.Kicked, "passes", rep.Passes)
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
	log.Warn("disconnect after access change: given up", "kicked", rep.Kicked, "remaining", rep.Remaining, "err", err)
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
