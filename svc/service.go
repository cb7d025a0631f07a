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

	"github.com/unibus/unibus/subjects"
)

// Services are the running control-plane services of one instance. Any
// number of instances, on any nodes, may run at once: they share the store,
// and micro's default queue group spreads the requests among them.
type Services struct {
	users, rooms, blobs *service
	once                sync.Once
	done                chan struct{}
	err                 error

	mu           sync.Mutex
	stopOnCancel func() bool // unregisters the stop on ctx; nil until set
}

// Start registers the micro services unibus-users, unibus-rooms and
// unibus-blobs on cfg.Conn, creating the blobs' object store (BlobsBucket)
// beside the store's buckets if needed, and returns them running. They run
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
	if cfg.AuthMode != AuthEnforce {
		log.Warn("signed-request checks are relaxed; use only in development or while migrating clients", "auth_mode", cfg.AuthMode)
	}
	base := context.WithoutCancel(ctx)
	h := &handlers{cfg: cfg, store: cfg.Store}
	bh, err := newBlobHandlers(ctx, h)
	if err != nil {
		return nil, err
	}
	users, err := startService(base, cfg, serviceSpec{
		name:        subjects.UsersService,
		group:       subjects.UsersGroup,
		description: "unibus users: the allowlist of identities, their admin flag and encryption keys",
		endpoints:   h.usersEndpoints(),
	})
	if err != nil {
		return nil, err
	}
	rooms, err := startService(base, cfg, serviceSpec{
		name:        subjects.RoomsService,
		group:       subjects.RoomsGroup,
		description: "unibus rooms: rooms, members and sealed room keys",
		endpoints:   h.roomsEndpoints(),
	})
	if err != nil {
		return nil, errors.Join(err, users.stop())
	}
	blobs, err := startService(base, cfg, serviceSpec{
		name:        subjects.BlobsService,
		group:       subjects.BlobsGroup,
		description: "unibus blobs: room content addressed by SHA-256, in chunks, sealed by the clients in encrypted rooms",
		endpoints:   bh.endpoints(),
	})
	if err != nil {
		return nil, errors.Join(err, rooms.stop(), users.stop())
	}
	ss := &Services{users: users, rooms: rooms, blobs: blobs, done: make(chan struct{})}
	// Return only once the server has the subscriptions, so that the
	// services answer the moment Start returns.
	if err := flush(ctx, cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("start control plane: %w", err), ss.Stop())
	}
	ss.mu.Lock()
	ss.stopOnCancel = context.AfterFunc(ctx, func() { _ = ss.Stop() })
	ss.mu.Unlock()
	log.Info("control plane started", "version", cfg.Version, "auth_mode", cfg.AuthMode,
		"workers", cfg.Workers, "require_encrypted_rooms", cfg.RequireEncryptedRooms)
	return ss, nil
}

// Stop stops the services: the server drops their subscriptions (new
// requests go to other instances), requests waiting for a worker or still
// queued in a subscription are refused with 503 (retry), and Stop returns
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

// service is one running micro service with its worker pool.
type service struct {
	name  string
	cfg   Config
	log   *slog.Logger
	base  context.Context
	ms    micro.Service
	slots chan struct{} // one token per busy worker
	quit  chan struct{} // closed by stop
	wg    sync.WaitGroup

	mu      sync.RWMutex
	stopped bool
	stats   map[string]*endpointStats // by endpoint name; fixed after start
}

func startService(base context.Context, cfg Config, spec serviceSpec) (*service, error) {
	s := &service{
		name:  spec.name,
		cfg:   cfg,
		log:   cfg.Logger.With("service", spec.name),
		base:  base,
		slots: make(chan struct{}, cfg.Workers),
		quit:  make(chan struct{}),
		stats: make(map[string]*endpointStats, len(spec.endpoints)),
	}
	for _, ep := range spec.endpoints {
		s.stats[ep.name] = &endpointStats{}
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
	g := ms.AddGroup(spec.group)
	for i := range spec.endpoints {
		ep := &spec.endpoints[i]
		err := g.AddEndpoint(ep.name, s.handler(ep, s.stats[ep.name]), micro.WithEndpointMetadata(metadata(ep, cfg)))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("add endpoint %s.%s: %w", spec.group, ep.name, err), s.stop())
		}
	}
	return s, nil
}

// enter registers one request in progress, unless the service is stopping.
func (s *service) enter() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.stopped {
		return false
	}
	s.wg.Add(1)
	return true
}

// stop drains the micro service, then refuses waiting requests and waits
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
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.quit)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// endpointStats counts what micro cannot see: micro measures its handler,
// which only hands requests to workers, so the real outcome and time of a
// request are reported here, in the "data" of "nats micro stats".
type endpointStats struct {
	handled   atomic.Int64
	errors    atomic.Int64
	busy      atomic.Int64
	nanos     atomic.Int64
	lastError atomic.Pointer[string]
}

// StatsData is the "data" of each endpoint in "nats micro stats": the
// outcome of requests as the workers see them.
type StatsData struct {
	// Handled counts the requests answered, errors included.
	Handled int64 `json:"handled"`
	// Errors counts the error replies.
	Errors int64 `json:"errors"`
	// Busy counts the requests refused because no worker became free
	// before their deadline.
	Busy int64 `json:"busy"`
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
		msg := fmt.Sprintf("%d %s", e.Code, e.Message)
		st.lastError.Store(&msg)
	}
}

func (st *endpointStats) snapshot() StatsData {
	d := StatsData{
		Handled:        st.handled.Load(),
		Errors:         st.errors.Load(),
		Busy:           st.busy.Load(),
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
