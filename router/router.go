package router

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"golang.org/x/time/rate"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// Router is a running instance of the routing service. Any number of
// instances may run, on any nodes: they share the sends (queue group
// subjects.RouterQueue), the membership (the store) and the room log.
type Router struct {
	cfg   Config
	log   *slog.Logger
	view  *kvstore.MembershipView
	ms    micro.Service
	stats *stats
	limit *sendLimiter
	seed  maphash.Seed
	// logs bounds the refusals and failures logged above debug level.
	logs *rate.Limiter

	// life bounds the store calls of the shards; canceled once they are
	// done, at Stop.
	life   context.Context
	cancel context.CancelFunc

	mu       sync.RWMutex // guards stopping and the sends into shards
	stopping bool
	shards   []chan *send
	wg       sync.WaitGroup
	// lane holds the sends the view did not admit yet (see recheck.go).
	lane *recheckLane

	once    sync.Once
	stopErr error
}

// send is one frame on its way through the router.
type send struct {
	room, pub string
	// reply is the sender's inbox, or "" for a send without an ack.
	reply  string
	data   []byte
	policy kvstore.RoomPolicy
	start  time.Time
	// due is when the recheck lane checks the send next.
	due time.Time
}

// Start follows the store's membership and starts the micro service
// subjects.RouterService on cfg.Conn, with one endpoint on
// subjects.SendAll in queue group subjects.RouterQueue. It returns once
// the server has the subscription. The router runs until Stop; ctx bounds
// only starting.
func Start(ctx context.Context, cfg Config) (_ *Router, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.valid(); err != nil {
		return nil, err
	}
	r := &Router{
		cfg:   cfg,
		log:   cfg.Logger.With("service", subjects.RouterService),
		stats: newStats(),
		limit: newSendLimiter(cfg.SendRate, cfg.SendBurst, time.Now()),
		seed:  maphash.MakeSeed(),
		logs:  rate.NewLimiter(logBudgetRate, logBudgetBurst),
	}
	r.life, r.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Stop())
		}
	}()
	if r.view, err = cfg.Store.WatchMembership(r.life); err != nil {
		return nil, fmt.Errorf("start router: follow membership: %w", err)
	}
	r.shards = make([]chan *send, cfg.Shards)
	for i := range r.shards {
		ch := make(chan *send, cfg.ShardQueue)
		r.shards[i] = ch
		r.wg.Go(func() { r.runShard(ch) })
	}
	r.lane = newRecheckLane(r)
	if r.ms, err = micro.AddService(cfg.Conn, micro.Config{
		Name:        subjects.RouterService,
		Version:     cfg.Version,
		Description: "unibus router: checks each member's send, appends the frame to the room log and delivers it to every member",
		Metadata:    map[string]string{"api": "unibus.v1"},
		QueueGroup:  subjects.RouterQueue,
		StatsHandler: func(*micro.Endpoint) any {
			return r.stats.snapshot()
		},
		ErrorHandler: func(_ micro.Service, err *micro.NATSError) {
			r.log.Error("subscription error", "subject", err.Subject, "err", err.Description)
		},
	}); err != nil {
		return nil, fmt.Errorf("start router: add service: %w", err)
	}
	if err := r.ms.AddEndpoint(subjects.EndpointSend, micro.HandlerFunc(r.handle),
		micro.WithEndpointSubject(subjects.SendAll),
		micro.WithEndpointQueueGroup(subjects.RouterQueue),
		micro.WithEndpointMetadata(r.metadata())); err != nil {
		return nil, fmt.Errorf("start router: add endpoint: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flushTimeout)
		defer cancel()
	}
	if err := cfg.Conn.FlushWithContext(ctx); err != nil {
		return nil, fmt.Errorf("start router: flush: %w", err)
	}
	r.log.Info("router started", "version", cfg.Version, "shards", cfg.Shards, "shard_queue", cfg.ShardQueue,
		"max_frame_bytes", cfg.MaxFrameBytes, "send_rate", cfg.SendRate, "send_burst", cfg.SendBurst)
	return r, nil
}

// Limits of the router's own waits and logs.
const (
	// flushTimeout bounds Start's and Stop's round trips to the server
	// when their context sets no deadline.
	flushTimeout = 10 * time.Second
	// logBudgetRate and logBudgetBurst bound the refusals and failures
	// logged above debug level, so that a flood cannot flood the log.
	logBudgetRate  = 10
	logBudgetBurst = 50
)

// metadata is what "nats micro info" shows of the send endpoint.
func (r *Router) metadata() map[string]string {
	return map[string]string{
		"summary": "send a frame to a room: " + subjects.SendAll + " as <room id>.<sender key>; the router checks membership, stores the frame (history keep) and delivers it to every member on " +
			subjects.DeliverAll + " as <member key>.<room id>, with headers " + subjects.HeaderSeq + " and " + subjects.HeaderPrev,
		"access":        string(subjects.AccessMember),
		"request":       "the frame's bytes (client/e2e wire format); the subject names the room and the sender, and must match the frame's",
		"response":      `{"id":string,"seq":integer,"duplicate"?:bool} (subjects.SendAck), to a request whose reply subject is the sender's own inbox; none to a plain publish`,
		"response_type": "subjects.SendAck",
		"max_bytes":     strconv.Itoa(r.cfg.MaxFrameBytes),
		"errors": `micro error headers and {"error":string,"code":int,"retry_after_ms"?:integer}; codes 400 403 404 413 429 503; ` +
			`a 429 carries the retry hint in the ` + subjects.HeaderRetryAfter + ` header too`,
	}
}

// Service returns the micro service (for Info and Stats).
func (r *Router) Service() micro.Service { return r.ms }

// Stats returns what the router did so far (the data of "nats micro
// stats").
func (r *Router) Stats() StatsData { return r.stats.snapshot() }

// Stop stops the router: the server drops its subscription (new sends go
// to other instances), a send still arriving is refused with 503 (retry),
// the sends already queued are handled, and Stop returns once they all
// are. It does not close Config.Conn. It is safe to call more than once.
func (r *Router) Stop() error {
	r.once.Do(func() {
		if r.ms != nil {
			if err := r.ms.Stop(); err != nil {
				r.stopErr = fmt.Errorf("stop router: %w", err)
			} else if !r.cfg.Conn.IsClosed() {
				ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
				if err := r.cfg.Conn.FlushWithContext(ctx); err != nil {
					r.log.Warn("unsubscribe not confirmed by the server", "err", err)
				}
				cancel()
			}
		}
		r.mu.Lock()
		r.stopping = true
		r.mu.Unlock()
		if r.lane != nil {
			r.lane.stop()
		}
		r.mu.Lock()
		for _, ch := range r.shards {
			close(ch)
		}
		r.mu.Unlock()
		r.wg.Wait()
		if r.view != nil {
			r.view.Stop()
		}
		r.cancel()
	})
	return r.stopErr
}

// handle is the micro handler of the send endpoint. It runs on micro's
// subscription goroutine, one send at a time, and never waits: it checks
// what needs nothing but memory (the subject, the reply subject, the size,
// membership in the view, the sender's rate) and hands the send to the
// shard of its room, or to the recheck lane when the view does not admit
// it (yet), or answers at once.
//
// A send whose reply subject is neither empty nor the sender's own inbox
// is dropped unanswered (misdirected): the router publishes with rights
// the sender lacks, and a reply is a publish to a subject the sender
// chose. The sender is the subject's last token, which the server attests:
// a peer may publish only to subjects.SendOf(itself).
func (r *Router) handle(req micro.Request) {
	start := time.Now()
	r.stats.received.Add(1)
	roomID, pub, err := subjects.ParseSend(req.Subject())
	if err != nil {
		r.misdirected(req.Subject(), req.Reply(), "", "not a send subject")
		r.stats.done(start)
		return
	}
	s := &send{room: roomID, pub: pub, reply: req.Reply(), data: req.Data(), start: start}
	if s.reply != "" {
		if owner, err := subjects.InboxOwner(s.reply); err != nil || owner != pub {
			r.misdirected(req.Subject(), s.reply, pub, "the reply subject is not the sender's inbox")
			r.stats.done(start)
			return
		}
	}
	if n := len(s.data); n > r.cfg.MaxFrameBytes {
		r.finish(s, refuse(subjects.CodeTooLarge, nil, "the frame is %d bytes, over the router's limit of %d", n, r.cfg.MaxFrameBytes))
		return
	}
	s.policy, err = r.view.Check(roomID, pub)
	if err != nil && !isMiss(err) {
		r.finish(s, membershipRefusal(roomID, pub, err))
		return
	}
	if wait, ok := r.limit.take(pub, start); !ok {
		f := refuse(subjects.CodeTooManyRequests, nil, "too many frames from %s: the limit is %g per second, in bursts of up to %d", pub, r.cfg.SendRate, r.cfg.SendBurst)
		f.retryAfter = max(wait, time.Millisecond)
		r.finish(s, f)
		return
	}
	if err != nil || r.lane.holds(s) {
		// The view may lag the store (a member just added), or an earlier
		// send of the sender to the room waits for it: the lane decides.
		if f := r.lane.add(s, err); f != nil {
			r.finish(s, f)
		}
		return
	}
	if f := r.enqueue(s); f != nil {
		r.finish(s, f)
	}
}

// enqueue hands s to the shard of its room without waiting: a full queue
// or a stopping router is 503.
func (r *Router) enqueue(s *send) *refusal {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.stopping {
		return errStopping()
	}
	select {
	case r.shards[maphash.String(r.seed, s.room)%uint64(len(r.shards))] <- s:
		return nil
	default:
		return refuse(subjects.CodeUnavailable, nil, "the router is busy; retry the send")
	}
}

// errStopping is the 503 of a send that arrived as the router stops.
func errStopping() *refusal {
	return refuse(subjects.CodeUnavailable, nil, "the router is stopping; retry the send")
}

// membershipRefusal maps an error of the membership view.
func membershipRefusal(roomID, pub string, err error) *refusal {
	switch {
	case errors.Is(err, kvstore.ErrNotMember):
		return refuse(subjects.CodeForbidden, err, "%s is not a member of room %s", pub, roomID)
	case errors.Is(err, kvstore.ErrNotFound):
		return refuse(subjects.CodeNotFound, err, "room %s not found", roomID)
	default:
		// The view is not ready or lost the store: fail closed.
		return refuse(subjects.CodeUnavailable, err, msgUnavailable)
	}
}

// misdirected counts and logs (at debug level: anyone may send them) a
// send that is dropped unanswered and changes nothing.
func (r *Router) misdirected(subject, reply, pub, why string) {
	r.stats.misdirected.Add(1)
	r.log.Debug("send dropped: "+why, "subject", subject, "reply", reply, "pub", pub)
}

// finish records a refused send, logs it and answers it if it asked for
// an answer.
func (r *Router) finish(s *send, f *refusal) {
	r.stats.refusal(f)
	r.stats.done(s.start)
	level := slog.LevelDebug
	if f.code == subjects.CodeUnavailable && r.logs.Allow() {
		level = slog.LevelError
	}
	if r.log.Enabled(r.life, level) {
		attrs := []any{"room", s.room, "pub", s.pub, "code", f.code, "error", f.message}
		if f.cause != nil {
			attrs = append(attrs, "cause", f.cause.Error())
		}
		r.log.Log(r.life, level, "send refused", attrs...)
	}
	if s.reply == "" {
		return
	}
	body, _ := json.Marshal(f.body()) // strings and integers
	m := &nats.Msg{
		Subject: s.reply,
		Header:  nats.Header{micro.ErrorHeader: {f.message}, micro.ErrorCodeHeader: {strconv.Itoa(f.code)}},
		Data:    body,
	}
	if ms := f.retryAfterMs(); ms > 0 {
		m.Header.Set(subjects.HeaderRetryAfter, strconv.FormatInt(ms, 10))
	}
	r.reply(m)
}

// reply publishes m, a reply into the sender's inbox (handle checked
// whose; this checks again that it is an inbox at all).
func (r *Router) reply(m *nats.Msg) {
	if _, err := subjects.InboxOwner(m.Subject); err != nil {
		r.log.Error("reply refused: not an inbox", "subject", m.Subject)
		return
	}
	if err := r.cfg.Conn.PublishMsg(m); err != nil {
		r.log.Debug("reply not sent", "subject", m.Subject, "err", err)
	}
}
