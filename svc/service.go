package svc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/internal/workpool"
	"github.com/unibus/unibus/subjects"
)

// Services are the running control-plane services of one instance. Any
// number of instances, on any nodes, may run at once: they share the store,
// and micro's default queue group spreads the requests among them.
type Services struct {
	users, rooms, blobs *service
	// janitor removes the blobs service's abandoned uploads.
	janitor *blobJanitor
	once    sync.Once
	done    chan struct{}
	err     error

	mu           sync.Mutex
	stopOnCancel func() bool // unregisters the stop on ctx; nil until set
}

// Start registers the micro services unibus-users, unibus-rooms and
// unibus-blobs on cfg.Conn and returns them running. cfg.Conn only receives
// requests and answers them; the state is cfg.Store's, on a connection of
// its own. They run
// until Stop is called or ctx is canceled (which stops them as Stop does);
// ctx's values reach every request.
func Start(ctx context.Context, cfg Config) (*Services, error) {
	cfg = cfg.withDefaults()
	if err := cfg.valid(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	log := cfg.Logger
	if mp := cfg.Conn.MaxPayload(); mp > 0 && int64(cfg.MaxBundleBytes) > mp {
		log.Warn("the server's max_payload is below the bundle limit: large rekeys cannot reach the services",
			"max_payload", mp, "max_bundle_bytes", cfg.MaxBundleBytes)
	}
	for subject, n := range cfg.EndpointMaxBytes {
		if mp := cfg.Conn.MaxPayload(); mp > 0 && int64(n) > mp {
			log.Warn("the server's max_payload is below an endpoint's body limit: its largest requests cannot reach the services",
				"max_payload", mp, "subject", subject, "max_bytes", n)
		}
	}
	if cfg.AuthMode != AuthEnforce {
		log.Warn("signed-request checks are relaxed; use only in development or while migrating clients", "auth_mode", cfg.AuthMode)
	}
	base := context.WithoutCancel(ctx)
	h := &handlers{cfg: cfg, store: cfg.Store}
	specs, err := newServiceSpecs(h)
	if err != nil {
		return nil, err
	}
	limits := newLimiter(cfg, time.Now())
	users, err := startService(base, cfg, limits, specs[0])
	if err != nil {
		return nil, err
	}
	rooms, err := startService(base, cfg, limits, specs[1])
	if err != nil {
		return nil, errors.Join(err, users.stop())
	}
	blobs, err := startService(base, cfg, limits, specs[2])
	if err != nil {
		return nil, errors.Join(err, rooms.stop(), users.stop())
	}
	ss := &Services{users: users, rooms: rooms, blobs: blobs, janitor: startBlobJanitor(h), done: make(chan struct{})}
	// Return only once the server has the subscriptions, so that the
	// services answer the moment Start returns.
	if err := flush(ctx, cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("start control plane: %w", err), ss.Stop())
	}
	ss.mu.Lock()
	ss.stopOnCancel = context.AfterFunc(ctx, func() { _ = ss.Stop() })
	ss.mu.Unlock()
	log.Info("control plane started", "version", cfg.Version, "auth_mode", cfg.AuthMode,
		"workers", cfg.Workers, "queue_length", cfg.QueueLength, "rate_limit", cfg.RateLimit, "rate_burst", cfg.RateBurst,
		"max_members_per_room", cfg.MaxMembersPerRoom, "max_rooms_per_user", cfg.MaxRoomsPerUser,
		"require_encrypted_rooms", cfg.RequireEncryptedRooms)
	return ss, nil
}

// Stop stops the services: the server drops their subscriptions (new
// requests go to other instances), requests waiting for a worker are
// refused with 503 (retry), and Stop returns
// when every request in progress has been answered. It does not close
// Config.Conn. It is safe to call more than once and from several
// goroutines.
func (ss *Services) Stop() error {
	ss.once.Do(func() {
		ss.mu.Lock()
		if ss.stopOnCancel != nil {
			ss.stopOnCancel()
		}
		ss.mu.Unlock()
		ss.err = errors.Join(ss.blobs.stop(), ss.rooms.stop(), ss.users.stop())
		// The services no longer hand it requests: what the stranger lane
		// holds is answered, and its goroutines end.
		ss.users.limits.stop()
		ss.janitor.stop()
		close(ss.done)
	})
	return ss.err
}

// Done is closed when the services have stopped (by Stop or by the
// cancellation of Start's context).
func (ss *Services) Done() <-chan struct{} { return ss.done }

// flush waits until the server has processed what cfg.Conn sent, bounded
// by ctx or, without a deadline, by the request timeout.
func flush(ctx context.Context, cfg Config) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.RequestTimeout)
		defer cancel()
	}
	if err := cfg.Conn.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// Users returns the micro service unibus-users (for Info and Stats).
func (ss *Services) Users() micro.Service { return ss.users.ms }

// Rooms returns the micro service unibus-rooms (for Info and Stats).
func (ss *Services) Rooms() micro.Service { return ss.rooms.ms }

// Blobs returns the micro service unibus-blobs (for Info and Stats).
func (ss *Services) Blobs() micro.Service { return ss.blobs.ms }

// serviceSpec describes one micro service.
type serviceSpec struct {
	name        string
	group       string
	description string
	endpoints   []endpoint
}

// service is one running micro service with its worker pool: micro's
// handler (one goroutine per endpoint) checks what needs no store (size,
// signature, rate) and queues the request; Config.Workers workers take
// requests from the queue and run the rest of the pipeline.
type service struct {
	name   string
	cfg    Config
	log    *slog.Logger
	base   context.Context
	ms     micro.Service
	limits *limiter                  // shared by the services of one Start: rate limits, known signers, the stranger lane
	logs   *logBudget                // of the refusals logged above debug level
	pool   *workpool.Pool            // the queue and the workers
	stats  map[string]*endpointStats // by endpoint name; fixed after start
}

func startService(base context.Context, cfg Config, limits *limiter, spec serviceSpec) (*service, error) {
	s := &service{
		name:   spec.name,
		cfg:    cfg,
		log:    cfg.Logger.With("service", spec.name),
		base:   base,
		limits: limits,
		logs:   newLogBudget(time.Now()),
		stats:  make(map[string]*endpointStats, len(spec.endpoints)),
	}
	for _, ep := range spec.endpoints {
		s.stats[ep.spec.Name] = &endpointStats{}
	}
	ms, err := micro.AddService(cfg.Conn, micro.Config{
		Name:        spec.name,
		Version:     cfg.Version,
		Description: spec.description,
		Metadata:    map[string]string{"api": "unibus.v1"},
		StatsHandler: func(e *micro.Endpoint) any {
			if st, ok := s.stats[e.Name]; ok {
				return st.snapshot()
			}
			return nil
		},
		ErrorHandler: func(_ micro.Service, err *micro.NATSError) {
			s.log.Error("subscription error", "subject", err.Subject, "err", err.Description)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("add service %s: %w", spec.name, err)
	}
	s.ms = ms
	s.pool = workpool.New(workpool.Config{Workers: cfg.Workers, QueueLength: cfg.QueueLength, MaxQueuedBytes: maxQueuedBytes})
	g := ms.AddGroup(spec.group)
	for i := range spec.endpoints {
		ep := &spec.endpoints[i]
		limit := cfg.bodyLimit(ep.spec.Subject, ep.spec.Bundle)
		err := g.AddEndpoint(ep.spec.Name, s.handler(ep, s.stats[ep.spec.Name], limit), micro.WithEndpointMetadata(metadata(ep, limit)))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("add endpoint %s: %w", ep.spec.Subject, err), s.stop())
		}
	}
	return s, nil
}

// enqueue hands a request to the workers, unless the service is stopping
// or the queue is full (by count or by bytes): then it returns the 503 to
// answer at once. A queued request is refused (503) at its deadline should
// no worker take it by then, so that a saturated service answers every
// request in time even when its workers are stuck.
func (s *service) enqueue(ep *endpoint, st *endpointStats, c *call) *Error {
	err := s.pool.Submit(workpool.Job{
		Run: func() {
			ctx, cancel := context.WithDeadline(s.base, c.deadline)
			defer cancel()
			s.run(ctx, ep, st, c)
		},
		Refuse: func(reason error) {
			e := errStopping()
			if errors.Is(reason, workpool.ErrExpired) {
				st.busy.Add(1)
				e = errBusy(context.DeadlineExceeded)
			}
			s.finish(c.w, ep, st, c.logCaller(), c.start, e)
		},
		Deadline: c.deadline,
		Size:     int64(len(c.body)),
	})
	switch {
	case errors.Is(err, workpool.ErrStopped):
		return errStopping()
	case err != nil:
		st.busy.Add(1)
		return errBusy(nil)
	}
	return nil
}

// errBusy is the 503 of a request that found no worker in time.
func errBusy(cause error) *Error {
	return newError(subjects.CodeUnavailable, cause, "the service is busy; retry later")
}

// errStopping is the 503 of a request that arrived as the service stops.
func errStopping() *Error {
	return newError(subjects.CodeUnavailable, nil, "the service is stopping; retry")
}

// stop drains the micro service, then refuses queued requests and waits
// for those in progress.
func (s *service) stop() error {
	err := s.ms.Stop()
	if err != nil {
		err = fmt.Errorf("stop service %s: %w", s.name, err)
	} else if !s.cfg.Conn.IsClosed() {
		// Once the server has the unsubscriptions, new requests go to
		// other instances; a failure only means they may still come here
		// and be refused as below.
		if ferr := flush(s.base, s.cfg); ferr != nil {
			s.log.Warn("unsubscribe not confirmed by the server", "err", ferr)
		}
	}
	s.pool.Stop()
	return err
}

// endpointStats counts what micro cannot see: micro measures its handler,
// which only hands requests to workers, so the real outcome and time of a
// request are reported here, in the "data" of "nats micro stats".
type endpointStats struct {
	handled atomic.Int64
	errors  atomic.Int64
	busy    atomic.Int64
	limited atomic.Int64
	// misdirected counts requests dropped unanswered because their reply
	// subject was not the caller's inbox (call.mayReply).
	misdirected atomic.Int64
	nanos       atomic.Int64
	lastError   atomic.Pointer[string]
}

// StatsData is the "data" of each endpoint in "nats micro stats": the
// outcome of requests as the workers see them.
type StatsData struct {
	// Handled counts the requests answered, errors included.
	Handled int64 `json:"handled"`
	// Errors counts the error replies.
	Errors int64 `json:"errors"`
	// Busy counts the requests refused because the queue was full or no
	// worker became free before their deadline.
	Busy int64 `json:"busy"`
	// RateLimited counts the requests refused because their caller was
	// over its rate limit (429).
	RateLimited int64 `json:"rate_limited"`
	// Misdirected counts the requests dropped without an answer because
	// their reply subject was not the caller's own inbox (a reply is a
	// publish with the services' rights to a subject the caller chose).
	Misdirected int64 `json:"misdirected"`
	// ProcessingTime is the total time from receipt to reply.
	ProcessingTime time.Duration `json:"processing_time"`
	// AverageProcessingTime is ProcessingTime / Handled.
	AverageProcessingTime time.Duration `json:"average_processing_time"`
	// LastError is the last error reply, "code message".
	LastError string `json:"last_error,omitempty"`
}

func (st *endpointStats) record(d time.Duration, e *Error) {
	st.handled.Add(1)
	st.nanos.Add(int64(d))
	if e != nil {
		st.errors.Add(1)
		if e.Code == subjects.CodeTooManyRequests {
			st.limited.Add(1)
		}
		msg := fmt.Sprintf("%d %s", e.Code, e.Message)
		st.lastError.Store(&msg)
	}
}

func (st *endpointStats) snapshot() StatsData {
	d := StatsData{
		Handled:        st.handled.Load(),
		Errors:         st.errors.Load(),
		Busy:           st.busy.Load(),
		RateLimited:    st.limited.Load(),
		Misdirected:    st.misdirected.Load(),
		ProcessingTime: time.Duration(st.nanos.Load()),
	}
	if d.Handled > 0 {
		d.AverageProcessingTime = d.ProcessingTime / time.Duration(d.Handled)
	}
	if p := st.lastError.Load(); p != nil {
		d.LastError = *p
	}
	return d
}
