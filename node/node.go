package node

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/router"
	"github.com/unibus/unibus/svc"
)

// ErrConfigValidation wraps every configuration error.
var ErrConfigValidation = errors.New("invalid node configuration")

// Config configures a node.
type Config struct {
	// Server is the embedded nats-server (listen address, data, TLS,
	// cluster). Its Customize hook is owned by the node. Unused when
	// NATSURL is set.
	Server embedded.Config
	// NATSURL, when set, attaches the node to an operator's nats-server
	// (or cluster: a comma-separated list of URLs) instead of starting an
	// embedded one. The servers must run the configuration that
	// authcallout.NATSConfig prints, and Keys is then required.
	NATSURL string
	// NATSTLS, when set, is the TLS configuration of the connections to
	// NATSURL (a pinned CA, see package certs).
	NATSTLS *tls.Config
	// ReconnectWait is the pause between reconnect attempts of the
	// attached node's connections; zero means nats.go's default.
	ReconnectWait time.Duration
	// Store configures the KV buckets (replicas, timeouts).
	Store kvstore.Config
	// Keys are the deployment's NATS keys; nil generates a fresh set, which
	// is right for a single embedded node. Cluster nodes share one set.
	Keys *authcallout.Keys
	// XKey encrypts the callout exchange when Keys is nil.
	XKey bool
	// Callout tunes the callout service (Conn, Issuer and XKey are filled
	// in by the node; Store and Logger default to the node's).
	Callout authcallout.Config
	// Services tunes the control-plane services (Store, Conn and Logger
	// are filled in by the node).
	Services svc.Config
	// Router tunes the routing service (Conn, Store and Logger are filled
	// in by the node, and Version from Services.Version when empty).
	Router router.Config
	// Admin, when set, is made an admin at start (bootstrap).
	Admin string
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
}

// Node is a running unibus node.
type Node struct {
	// Server is the embedded nats-server; nil when attached (NATSURL).
	Server *embedded.Server
	Store  *kvstore.Store
	Keys   authcallout.Keys

	// ServiceConn is the services' responding connection (account UNIBUS):
	// it receives requests and may publish only into peers' inboxes.
	ServiceConn *nats.Conn
	// StoreConn is the connection that owns the state (account UNIBUS):
	// the store's JetStream, KV and object store. No request reaches it.
	StoreConn *nats.Conn
	// RouterConn is the routing service's connection (account UNIBUS, the
	// router user): it receives the members' sends and may publish only
	// deliveries and into peers' inboxes.
	RouterConn *nats.Conn
	// SystemConn is a system-account connection.
	SystemConn *nats.Conn

	// dial connects as one of the deployment's users: in-process to the
	// embedded server, or over the network when attached.
	dial        func(kp nkeys.KeyPair, opts ...nats.Option) (*nats.Conn, error)
	clientURL   string
	calloutConn *nats.Conn
	callout     *authcallout.Service
	services    *svc.Services
	router      *router.Router
	watcher     *authcallout.Watcher
	logger      *slog.Logger
	// life bounds what runs until Close (the watcher, the services); the
	// context given to Start bounds only starting.
	life   context.Context
	cancel context.CancelFunc
}

// Start starts a node and returns when it accepts peers: an embedded
// nats-server and everything on it, or, with Config.NATSURL, only the
// unibus side attached to an operator's servers.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var keys authcallout.Keys
	switch {
	case cfg.Keys != nil:
		keys = *cfg.Keys
	case cfg.NATSURL != "":
		return nil, fmt.Errorf("%w: attaching to %s needs the deployment keys the servers were configured with", ErrConfigValidation, cfg.NATSURL)
	default:
		if keys, err = authcallout.GenerateKeys(cfg.XKey); err != nil {
			return nil, err
		}
	}
	if err := checkPayloadLimits(cfg); err != nil {
		return nil, err
	}
	conf, err := authcallout.NATSConfig(keys, cfg.Callout.Limits)
	if err != nil {
		return nil, err
	}
	n := &Node{Keys: keys, logger: logger}
	n.life, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	if cfg.NATSURL != "" {
		n.attach(cfg)
	} else if err := n.startServer(cfg, conf); err != nil {
		return nil, err
	}
	if n.calloutConn, err = n.dial(keys.CalloutUser, nats.Name("unibus-authcallout")); err != nil {
		return nil, fmt.Errorf("connect callout user: %w", err)
	}
	if n.ServiceConn, err = n.dial(keys.ServiceUser, nats.Name("unibus-services")); err != nil {
		return nil, fmt.Errorf("connect service user: %w", err)
	}
	if n.StoreConn, err = n.dial(keys.StoreUser, nats.Name("unibus-store")); err != nil {
		return nil, fmt.Errorf("connect store user: %w", err)
	}
	if n.RouterConn, err = n.dial(keys.RouterUser, nats.Name("unibus-router")); err != nil {
		return nil, fmt.Errorf("connect router user: %w", err)
	}
	if n.SystemConn, err = n.dial(keys.SystemUser, nats.Name("unibus-system")); err != nil {
		return nil, fmt.Errorf("connect system user: %w", err)
	}
	js, err := jetstream.New(n.StoreConn)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	storeCfg := cfg.Store
	if storeCfg.Logger == nil {
		storeCfg.Logger = logger.With("component", "store")
	}
	if n.Store, err = openStore(ctx, js, storeCfg); err != nil {
		return nil, err
	}
	co := cfg.Callout
	co.Conn, co.Issuer, co.XKey = n.calloutConn, keys.Issuer, keys.XKey
	if co.Store == nil {
		co.Store = n.Store
	}
	if co.Logger == nil {
		co.Logger = logger
	}
	if n.callout, err = authcallout.Start(ctx, co); err != nil {
		return nil, fmt.Errorf("start auth callout: %w", err)
	}
	kicker := &authcallout.Kicker{Conn: n.SystemConn}
	if n.watcher, err = authcallout.StartWatcher(n.life, n.Store, kicker, logger); err != nil {
		return nil, err
	}
	sc := cfg.Services
	sc.Store, sc.Conn = n.Store, n.ServiceConn
	if sc.Logger == nil {
		sc.Logger = logger
	}
	if n.services, err = startServices(ctx, n.life, sc, logger); err != nil {
		return nil, err
	}
	rc := cfg.Router
	rc.Conn, rc.Store = n.RouterConn, n.Store
	if rc.Logger == nil {
		rc.Logger = logger
	}
	if rc.Version == "" {
		rc.Version = cfg.Services.Version
	}
	if n.router, err = startRouter(ctx, rc, logger); err != nil {
		return nil, err
	}
	if cfg.Admin != "" {
		u, err := n.Store.EnsureAdmin(ctx, cfg.Admin, "admin")
		if err != nil {
			return nil, fmt.Errorf("bootstrap admin: %w", err)
		}
		logger.Info("admin ready", "pub", u.Pub)
	}
	return n, nil
}

// startServer starts the embedded nats-server with the unibus accounts.
func (n *Node) startServer(cfg Config, conf string) error {
	srvCfg := cfg.Server
	srvCfg.Logger = n.logger
	srvCfg.Customize = func(o *server.Options) error {
		if err := o.ProcessConfigString(conf); err != nil {
			return fmt.Errorf("load unibus accounts: %w", err)
		}
		return nil
	}
	var err error
	if n.Server, err = embedded.Start(srvCfg); err != nil {
		return err
	}
	n.clientURL = n.Server.ClientURL()
	n.dial = func(kp nkeys.KeyPair, opts ...nats.Option) (*nats.Conn, error) {
		return n.Server.InProcessConn(append([]nats.Option{userAuth(kp), nats.MaxReconnects(-1)}, opts...)...)
	}
	return nil
}

// attach makes the node's connections go to the operator's servers. They
// reconnect forever: the node outlives any one server of a cluster.
func (n *Node) attach(cfg Config) {
	n.clientURL = cfg.NATSURL
	n.dial = func(kp nkeys.KeyPair, opts ...nats.Option) (*nats.Conn, error) {
		base := []nats.Option{userAuth(kp), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(false)}
		if cfg.NATSTLS != nil {
			base = append(base, nats.Secure(cfg.NATSTLS))
		}
		if cfg.ReconnectWait > 0 {
			base = append(base, nats.ReconnectWait(cfg.ReconnectWait))
		}
		nc, err := nats.Connect(cfg.NATSURL, append(base, opts...)...)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", cfg.NATSURL, err)
		}
		return nc, nil
	}
}

// openStore opens the buckets, retrying while JetStream is still electing
// leaders (a cluster forming, a node restarting) until ctx ends.
func openStore(ctx context.Context, js jetstream.JetStream, cfg kvstore.Config) (*kvstore.Store, error) {
	for {
		st, err := kvstore.Open(ctx, js, cfg)
		if err == nil {
			return st, nil
		}
		if errors.Is(err, kvstore.ErrConfigValidation) {
			return nil, fmt.Errorf("open store: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open store: %w (gave up: %w)", err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// checkPayloadLimits refuses a per-connection publish limit that would
// stop the services' largest accepted requests (rekey bundles, blob
// chunks) at the server: every body limit of the services, plus the
// signature headers, must fit in it; and one that would stop the history
// reply that carries the router's largest frame back. The limits live in
// different packages; the node is where all are known.
func checkPayloadLimits(cfg Config) error {
	publish := cfg.Callout.Limits.MaxPublishBytes
	if publish == 0 {
		publish = authcallout.DefaultMaxPublishBytes
	}
	largest := cfg.Services.LargestBodyBytes()
	if need := int64(largest) + publishHeaderBytes; publish < need {
		return fmt.Errorf("%w: the publish limit (%d bytes) is below the services' largest request body (%d) plus %d bytes of headers: raise the publish limit or lower the body limits", ErrConfigValidation, publish, largest, publishHeaderBytes)
	}
	// The router's settings are checked here too, before anything starts.
	if err := cfg.Router.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfigValidation, err)
	}
	// A stored frame comes back to a member in a history reply of its own,
	// which the services' connection must be allowed to publish.
	frame := cmp.Or(cfg.Router.MaxFrameBytes, router.DefaultMaxFrameBytes)
	if need := router.HistoryReplyBytes(frame); publish < need {
		return fmt.Errorf("%w: the publish limit (%d bytes) is below the history reply of the router's largest frame (%d bytes: %d in base64 with its page): raise the publish limit or lower the frame limit", ErrConfigValidation, publish, frame, need)
	}
	return nil
}

// publishHeaderBytes is the room left for a request's headers (the
// signature) above its body.
const publishHeaderBytes = 16 << 10

// startServices starts the services, retrying while JetStream is still
// electing leaders (the blob store of a cluster starting at once), until
// ctx ends; life bounds the services once started.
func startServices(ctx, life context.Context, cfg svc.Config, logger *slog.Logger) (*svc.Services, error) {
	for {
		s, err := svc.Start(life, cfg)
		if err == nil {
			return s, nil
		}
		if errors.Is(err, svc.ErrConfigValidation) {
			return nil, fmt.Errorf("start services: %w", err)
		}
		logger.Warn("start services: retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("start services: %w (gave up: %w)", err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// startRouter starts the routing service, retrying while JetStream is
// still electing leaders (the membership view of a cluster starting at
// once), until ctx ends.
func startRouter(ctx context.Context, cfg router.Config, logger *slog.Logger) (*router.Router, error) {
	for {
		r, err := router.Start(ctx, cfg)
		if err == nil {
			return r, nil
		}
		if errors.Is(err, router.ErrConfigValidation) {
			return nil, fmt.Errorf("start router: %w", err)
		}
		logger.Warn("start router: retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("start router: %w (gave up: %w)", err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// userAuth authenticates an in-process service connection with an nkey.
func userAuth(kp nkeys.KeyPair) nats.Option {
	pub, _ := kp.PublicKey()
	return nats.Nkey(pub, kp.Sign)
}

// ServiceUserConn opens another in-process connection as the service user
// (account UNIBUS), e.g. for a second instance of the services.
func (n *Node) ServiceUserConn(opts ...nats.Option) (*nats.Conn, error) {
	return n.dial(n.Keys.ServiceUser, opts...)
}

// StoreUserConn opens another in-process connection as the store user
// (account UNIBUS), the one that may use JetStream, e.g. for the store of
// a second instance of the services.
func (n *Node) StoreUserConn(opts ...nats.Option) (*nats.Conn, error) {
	return n.dial(n.Keys.StoreUser, opts...)
}

// Services are the control-plane services the node started (for Stats,
// or to stop them in tests).
func (n *Node) Services() *svc.Services { return n.services }

// Router is the routing service the node started (for Stats, or to stop
// it in tests).
func (n *Node) Router() *router.Router { return n.router }

// RouterUserConn opens another in-process connection as the router user
// (account UNIBUS), e.g. for a second instance of the router.
func (n *Node) RouterUserConn(opts ...nats.Option) (*nats.Conn, error) {
	return n.dial(n.Keys.RouterUser, opts...)
}

// ClientURL is where peers connect: the embedded server's URL, or the
// attached servers' URLs.
func (n *Node) ClientURL() string { return n.clientURL }

// Close stops everything the node started, in reverse order, and waits.
func (n *Node) Close() {
	defer n.cancel()
	if n.router != nil {
		if err := n.router.Stop(); err != nil {
			n.logger.Warn("stop router", "err", err)
		}
	}
	if n.services != nil {
		if err := n.services.Stop(); err != nil {
			n.logger.Warn("stop services", "err", err)
		}
	}
	if n.watcher != nil {
		n.watcher.Stop()
	}
	if n.callout != nil {
		n.callout.Stop()
	}
	for _, nc := range []*nats.Conn{n.calloutConn, n.ServiceConn, n.RouterConn, n.StoreConn, n.SystemConn} {
		if nc != nil {
			nc.Close()
		}
	}
	if n.Server != nil {
		n.Server.Close()
	}
}
