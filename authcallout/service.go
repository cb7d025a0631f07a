package authcallout

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/internal/workpool"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// Subject and header of the nats-server auth callout protocol.
const (
	requestSubject = "$SYS.REQ.USER.AUTH"
	xkeyHeader     = "Nats-Server-Xkey"
	queueGroup     = "unibus-authcallout"
	// xkeyLen is the length of the curve public key in xkeyHeader.
	xkeyLen = 56
)

// Defaults for Config.
const (
	// DefaultRequestTimeout bounds one authorization from its arrival,
	// well inside the server's 2 s auth timeout.
	DefaultRequestTimeout = time.Second
	// DefaultUserTTL is the lifetime of an issued user JWT; the server
	// disconnects the client when it expires and it reconnects with fresh
	// permissions.
	DefaultUserTTL = 15 * time.Minute
	// DefaultWorkers bounds concurrent authorizations.
	DefaultWorkers = 32
	// DefaultQueueLength bounds requests waiting for a worker; beyond it
	// requests are denied at once.
	DefaultQueueLength = 1024
)

// Store is what the callout reads; *kvstore.Store implements it: the
// user, from the bucket's leader, so that admission is never decided on a
// stale replica and fails closed when a cluster has lost quorum. It is the
// one read of an admission: the permissions follow from the user's key
// and admin flag alone, never from its rooms.
type Store interface {
	GetUserFromLeader(ctx context.Context, pub string) (kvstore.User, error)
}

var _ Store = (*kvstore.Store)(nil)

// Config configures the callout service.
type Config struct {
	// Conn is a connection of the callout user (account AUTH).
	Conn *nats.Conn
	// Store looks users up.
	Store Store
	// Issuer signs user JWTs and responses: the account key named as the
	// auth_callout issuer.
	Issuer nkeys.KeyPair
	// XKey, when set, decrypts requests and encrypts responses.
	XKey nkeys.KeyPair
	// RequestTimeout bounds one authorization from the moment the request
	// arrives, the wait for a worker included (DefaultRequestTimeout). It
	// must stay below the server's auth timeout (2 s by default), or the
	// server denies first.
	RequestTimeout time.Duration
	// UserTTL is the lifetime of issued user JWTs (DefaultUserTTL).
	UserTTL time.Duration
	// Workers bounds concurrent authorizations (DefaultWorkers).
	Workers int
	// QueueLength bounds the requests waiting for a worker
	// (DefaultQueueLength). A request that finds the queue full is denied
	// at once, one still waiting at RequestTimeout then (even when every
	// worker is stuck), so a connect storm is answered within
	// RequestTimeout rather than at the server's auth timeout.
	QueueLength int
	// Limits go into every user JWT issued (jwt Limits.Payload and
	// Limits.Subs); zero fields take their defaults. nats-server 2.15
	// ignores them in callout responses: give NATSConfig the same
	// limits, which enforces them on account UNIBUS (see PeerLimits).
	Limits PeerLimits
	// Logger receives decisions at debug level and failures at warn.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	c.UserTTL = cmp.Or(c.UserTTL, DefaultUserTTL)
	c.Workers = cmp.Or(c.Workers, DefaultWorkers)
	c.QueueLength = cmp.Or(c.QueueLength, DefaultQueueLength)
	c.Limits = c.Limits.withDefaults()
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c Config) valid() error {
	if c.Conn == nil {
		return fmt.Errorf("%w: a connection is required", ErrConfigValidation)
	}
	if c.Store == nil {
		return fmt.Errorf("%w: a store is required", ErrConfigValidation)
	}
	if c.Issuer == nil {
		return fmt.Errorf("%w: an issuer key is required", ErrConfigValidation)
	}
	if pub, err := c.Issuer.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
		return fmt.Errorf("%w: the issuer must be an account key", ErrConfigValidation)
	}
	if c.XKey != nil {
		if pub, err := c.XKey.PublicKey(); err != nil || !nkeys.IsValidPublicCurveKey(pub) {
			return fmt.Errorf("%w: the xkey must be a curve key", ErrConfigValidation)
		}
	}
	if c.RequestTimeout < 0 || c.UserTTL < time.Second || c.Workers < 1 || c.QueueLength < 1 {
		return fmt.Errorf("%w: timeouts, TTL, workers and queue length must be positive", ErrConfigValidation)
	}
	return c.Limits.valid()
}

// Stats counts the callout's answers since Start.
type Stats struct {
	// Admitted counts the connections admitted.
	Admitted int64
	// Denied counts the connections denied after authorization: an
	// unknown, revoked or malformed key, a bad nonce signature, a store
	// failure or a timeout.
	Denied int64
	// Busy counts the connections denied without authorization because
	// the queue was full or they waited in it past RequestTimeout.
	Busy int64
	// Undecodable counts the requests that could not be read (and so not
	// answered: the server denies them at its auth timeout).
	Undecodable int64
}

// Service answers auth callout requests until Stop.
type Service struct {
	cfg  Config
	sub  *nats.Subscription
	pool *workpool.Pool
	now  func() time.Time
	sign jwt.SignFn
	// life is canceled by Stop, which ends the authorizations in progress
	// (denied).
	life   context.Context
	cancel context.CancelFunc

	admitted, denied, busy, undecodable atomic.Int64
}

// Start subscribes to the callout subject (in a queue group, so several
// instances share the load) and starts the workers. ctx bounds starting
// (the subscription's round trip to the server), not the service, which
// runs until Stop.
func Start(ctx context.Context, cfg Config) (*Service, error) {
	cfg.setDefaults()
	if err := cfg.valid(); err != nil {
		return nil, err
	}
	sign, err := newSigner(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfigValidation, err)
	}
	// FlushWithContext needs a deadline: ctx's, or nats.go's Flush timeout.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s := &Service{cfg: cfg, now: time.Now, sign: sign}
	s.life, s.cancel = context.WithCancel(context.Background())
	s.pool = workpool.New(workpool.Config{Workers: cfg.Workers, QueueLength: cfg.QueueLength})
	if s.sub, err = cfg.Conn.QueueSubscribe(requestSubject, queueGroup, s.receive); err == nil {
		err = cfg.Conn.FlushWithContext(ctx)
	}
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("subscribe %s: %w", requestSubject, err)
	}
	return s, nil
}

// Stop unsubscribes, denies the requests still waiting for a worker, ends
// the authorizations in progress (denied) and waits for them.
func (s *Service) Stop() {
	if s.sub != nil {
		_ = s.sub.Unsubscribe()
	}
	s.cancel()
	s.pool.Stop()
}

// Stats returns the counts of the callout's answers.
func (s *Service) Stats() Stats {
	return Stats{
		Admitted:    s.admitted.Load(),
		Denied:      s.denied.Load(),
		Busy:        s.busy.Load(),
		Undecodable: s.undecodable.Load(),
	}
}

// receive is the subscription's handler: it queues the request for a
// worker or, when the queue is full, denies it at once (a decode and a
// signature, no store work), so that a connect storm is answered rather
// than left to the server's auth timeout.
func (s *Service) receive(msg *nats.Msg) {
	if !strings.HasPrefix(msg.Reply, serverInboxPrefix) {
		// Only nats-server sends authorization requests, with a reply in
		// its own inbox; anything else is answered nowhere (the callout
		// user's permissions would refuse the publish too).
		s.cfg.Logger.Debug("authorization request dropped: its reply subject is not the server's inbox", "reply", msg.Reply)
		return
	}
	deadline := time.Now().Add(s.cfg.RequestTimeout)
	err := s.pool.Submit(workpool.Job{
		Run:      func() { s.handle(msg, deadline) },
		Refuse:   func(reason error) { s.refuse(msg, refusal(reason)) },
		Deadline: deadline,
	})
	if errors.Is(err, workpool.ErrFull) {
		s.refuse(msg, "queue full")
	}
}

// refusal says why the pool refused a request.
func refusal(reason error) string {
	if errors.Is(reason, workpool.ErrExpired) {
		return "waited past the request timeout"
	}
	return "stopping"
}

// handle is the three steps: decode, authorize, respond.
func (s *Service) handle(msg *nats.Msg, deadline time.Time) {
	ctx, cancel := context.WithDeadline(s.life, deadline)
	defer cancel()
	req, serverXKey, err := s.decode(msg)
	if err != nil {
		// Without a decodable request there is no one to answer: the server
		// denies at its timeout.
		s.undecodable.Add(1)
		s.cfg.Logger.Warn("auth callout: undecodable request", "err", err)
		return
	}
	userJWT, pub, err := s.authorize(ctx, req)
	if err != nil {
		s.denied.Add(1)
		s.cfg.Logger.Debug("auth callout: deny", "pub", pub, "client", req.ClientInformation.ID, "err", err)
	} else {
		s.admitted.Add(1)
		s.cfg.Logger.Debug("auth callout: admit", "pub", pub, "client", req.ClientInformation.ID)
	}
	if err := s.respond(msg, req, serverXKey, userJWT, err); err != nil {
		s.cfg.Logger.Warn("auth callout: respond", "err", err)
	}
}

// refuse denies a request without authorizing it (busy).
func (s *Service) refuse(msg *nats.Msg, why string) {
	req, serverXKey, err := s.decode(msg)
	if err != nil {
		s.undecodable.Add(1)
		s.cfg.Logger.Warn("auth callout: undecodable request", "err", err)
		return
	}
	s.busy.Add(1)
	// Debug, like every denial: a connect storm would flood the log (Stats
	// counts them).
	s.cfg.Logger.Debug("auth callout: busy, deny", "why", why, "client", req.ClientInformation.ID)
	if err := s.respond(msg, req, serverXKey, "", fmt.Errorf("%w: busy (%s)", ErrDenied, why)); err != nil {
		s.cfg.Logger.Warn("auth callout: respond", "err", err)
	}
}

// decode opens (when encrypted) and verifies the server's request JWT.
func (s *Service) decode(msg *nats.Msg) (*jwt.AuthorizationRequestClaims, string, error) {
	data := msg.Data
	serverXKey := msg.Header.Get(xkeyHeader)
	if s.cfg.XKey != nil {
		if serverXKey == "" {
			return nil, "", fmt.Errorf("decode request: %w: unencrypted request while xkey is on", ErrDenied)
		}
		// nkeys (v0.4.17) panics in Open on a sender key that decodes to
		// more bytes than a curve key, and accepts one or three characters
		// after a valid key: check the exact form first.
		if len(serverXKey) != xkeyLen || !nkeys.IsValidPublicCurveKey(serverXKey) {
			return nil, "", fmt.Errorf("decode request: %w: %s is not a curve public key", ErrDenied, xkeyHeader)
		}
		opened, err := s.cfg.XKey.Open(data, serverXKey)
		if err != nil {
			return nil, "", fmt.Errorf("decrypt request: %w", err)
		}
		data = opened
	}
	req, err := jwt.DecodeAuthorizationRequestClaims(string(data))
	if err != nil {
		return nil, "", fmt.Errorf("decode request: %w", err)
	}
	if !nkeys.IsValidPublicServerKey(req.Issuer) {
		return nil, "", fmt.Errorf("decode request: issuer %q is not a server", req.Issuer)
	}
	return req, serverXKey, nil
}

// authorize decides and, on admission, returns the signed user JWT. The
// client's nkey is returned for logging whenever it is known.
func (s *Service) authorize(ctx context.Context, req *jwt.AuthorizationRequestClaims) (string, string, error) {
	opts := req.ConnectOptions
	if opts.Nkey == "" {
		return "", "", fmt.Errorf("%w: no nkey presented", ErrDenied)
	}
	pub, err := subjects.NormalizeUserKey(opts.Nkey)
	if err != nil {
		// The error names the value, unless it may be a seed.
		return "", "", fmt.Errorf("%w: %w", ErrDenied, err)
	}
	if pub != opts.Nkey {
		return "", "", fmt.Errorf("%w: %q is not in the canonical form of a user public key", ErrDenied, opts.Nkey)
	}
	if err := verifyNonce(pub, req.ClientInformation.Nonce, opts.SignedNonce); err != nil {
		return "", pub, err
	}
	user, err := s.cfg.Store.GetUserFromLeader(ctx, pub)
	if errors.Is(err, kvstore.ErrNotFound) {
		return "", pub, fmt.Errorf("%w: not registered", ErrDenied)
	}
	if err != nil {
		return "", pub, fmt.Errorf("%w: look up user: %w", ErrDenied, err)
	}
	if user.Revoked() {
		return "", pub, fmt.Errorf("%w: revoked", ErrDenied)
	}
	perms, err := Permissions(pub, user.Admin)
	if err != nil {
		return "", pub, fmt.Errorf("%w: %w", ErrDenied, err)
	}
	if err := ctx.Err(); err != nil {
		return "", pub, fmt.Errorf("%w: %w", ErrDenied, err)
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Name = pub
	uc.Audience = AccountUnibus
	uc.Expires = s.now().Add(s.cfg.UserTTL).Unix()
	uc.Permissions = perms
	uc.Limits.Payload = s.cfg.Limits.MaxPublishBytes
	uc.Limits.Subs = s.cfg.Limits.MaxSubscriptions
	token, err := uc.EncodeWithSigner(s.cfg.Issuer, s.sign)
	if err != nil {
		return "", pub, fmt.Errorf("%w: sign user jwt: %w", ErrDenied, err)
	}
	return token, pub, nil
}

// verifyNonce checks the client's signature over the server's nonce, as
// nats-server does for configured nkey users.
func verifyNonce(pub, nonce, sig string) error {
	if nonce == "" || sig == "" {
		return fmt.Errorf("%w: no signed nonce", ErrDenied)
	}
	raw, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		if raw, err = base64.StdEncoding.DecodeString(sig); err != nil {
			return fmt.Errorf("%w: malformed nonce signature", ErrDenied)
		}
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDenied, err)
	}
	if err := kp.Verify([]byte(nonce), raw); err != nil {
		return fmt.Errorf("%w: bad nonce signature", ErrDenied)
	}
	return nil
}

// respond signs (and encrypts) the answer: the user JWT, or the denial.
func (s *Service) respond(msg *nats.Msg, req *jwt.AuthorizationRequestClaims, serverXKey, userJWT string, denial error) error {
	rc := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	rc.Audience = req.Server.ID
	if denial != nil {
		// The client sees only "authorization violation"; the reason is
		// logged by the server, so keep it short and free of internals.
		rc.Error = "not authorized"
	} else {
		rc.Jwt = userJWT
	}
	token, err := rc.EncodeWithSigner(s.cfg.Issuer, s.sign)
	if err != nil {
		return fmt.Errorf("sign response: %w", err)
	}
	data := []byte(token)
	if s.cfg.XKey != nil {
		if data, err = s.cfg.XKey.Seal(data, serverXKey); err != nil {
			return fmt.Errorf("encrypt response: %w", err)
		}
	}
	if err := msg.Respond(data); err != nil {
		return fmt.Errorf("send response: %w", err)
	}
	return nil
}
