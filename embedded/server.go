package embedded

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultPort is the NATS client port used when Config.Port is zero.
const DefaultPort = 4222

// RandomPort asks the operating system for a free port (tests).
const RandomPort = -1

// DefaultReadyTimeout bounds how long Start waits for the server to accept
// connections when Config.ReadyTimeout is zero. A server usually is ready in
// milliseconds, but JetStream's start can take more than 10 s on a loaded
// machine (seen with `make run` beside a build on 2 cores), and a node of a
// cluster waits for its peers.
const DefaultReadyTimeout = time.Minute

// Config describes one embedded nats-server.
type Config struct {
	// Host is the client listen address; empty means 127.0.0.1.
	Host string
	// Port is the client port; 0 means DefaultPort, RandomPort a free one.
	Port int
	// DataDir holds JetStream file storage. Required.
	DataDir string
	// ServerName names the server; required in a cluster, generated otherwise.
	ServerName string
	// Cluster joins a cluster when Cluster.Name is set.
	Cluster ClusterConfig
	// TLS, when set, makes the client port require TLS.
	TLS *tls.Config
	// ReadyTimeout bounds the wait for the server to accept connections.
	ReadyTimeout time.Duration
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger
	// Customize, when set, may adjust the nats-server options last (used by
	// the auth callout wiring and by tests).
	Customize func(*server.Options) error
}

// ClusterConfig joins the server to a NATS cluster over routes.
type ClusterConfig struct {
	// Name is the cluster name shared by every node.
	Name string
	// Host and Port are where this node listens for routes (Port RandomPort
	// picks a free one).
	Host string
	Port int
	// Routes are the route URLs of the other nodes (nats-route://host:port).
	Routes []string
}

func (c Config) valid() error {
	if c.DataDir == "" {
		return fmt.Errorf("%w: data directory is required", ErrConfigValidation)
	}
	if c.Port < RandomPort || c.Port > 65535 {
		return fmt.Errorf("%w: port %d out of range", ErrConfigValidation, c.Port)
	}
	if c.Cluster.Name != "" {
		if c.ServerName == "" {
			return fmt.Errorf("%w: a cluster node needs a server name", ErrConfigValidation)
		}
		if c.Cluster.Port < RandomPort || c.Cluster.Port > 65535 {
			return fmt.Errorf("%w: cluster port %d out of range", ErrConfigValidation, c.Cluster.Port)
		}
	}
	return nil
}

// Server is a running embedded nats-server.
type Server struct {
	ns     *server.Server
	tls    bool
	logger *slog.Logger
}

// Options turns a Config into nats-server options.
func (c Config) Options() (*server.Options, error) {
	if err := c.valid(); err != nil {
		return nil, err
	}
	host := c.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := c.Port
	if port == 0 {
		port = DefaultPort
	}
	dataDir, err := filepath.Abs(c.DataDir)
	if err != nil {
		return nil, fmt.Errorf("resolve data directory: %w", err)
	}
	opts := &server.Options{
		ServerName: c.ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dataDir,
		NoSigs:     true, // the owning process handles signals
		// A nonce in INFO lets nkey clients sign it (see DESIGN.md pitfalls).
		AlwaysEnableNonce: true,
	}
	if c.TLS != nil {
		opts.TLSConfig = c.TLS
		opts.TLS = true
		opts.TLSVerify = c.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		opts.TLSTimeout = 2
	}
	if c.Cluster.Name != "" {
		opts.Cluster.Name = c.Cluster.Name
		opts.Cluster.Host = c.Cluster.Host
		if opts.Cluster.Host == "" {
			opts.Cluster.Host = host
		}
		opts.Cluster.Port = c.Cluster.Port
		for _, r := range c.Cluster.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("%w: route %q: %w", ErrConfigValidation, r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	if c.Customize != nil {
		if err := c.Customize(opts); err != nil {
			return nil, fmt.Errorf("customize server options: %w", err)
		}
	}
	return opts, nil
}

// Start starts an embedded nats-server and waits until it accepts
// connections.
func Start(c Config) (*Server, error) {
	opts, err := c.Options()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("create nats-server: %w", err)
	}
	logger := c.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logs := &slogAdapter{logger: logger}
	ns.SetLoggerV2(logs, false, false, false)
	ns.Start()
	timeout := c.ReadyTimeout
	if timeout == 0 {
		timeout = DefaultReadyTimeout
	}
	if err := waitReady(ns, logs, timeout); err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("start nats-server: %w", err)
	}
	return &Server{ns: ns, tls: opts.TLSConfig != nil, logger: logger}, nil
}

// waitReady waits up to timeout for ns to accept connections, and stops
// early with the error nats-server logged as fatal (a port in use, say).
func waitReady(ns *server.Server, logs *slogAdapter, timeout time.Duration) error {
	const poll = 50 * time.Millisecond
	deadline := time.Now().Add(timeout)
	for {
		if err := logs.fatalError(); err != nil {
			return err
		}
		if ns.ReadyForConnections(poll) {
			// Ready can follow a fatal error on one listener (the
			// monitoring or route port) while the client port works.
			return logs.fatalError()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w within %s", ErrNotReady, timeout)
		}
	}
}

// NATS returns the underlying nats-server (for in-process administration
// such as disconnecting clients).
func (s *Server) NATS() *server.Server { return s.ns }

// ClientURL is where clients connect (nats:// or tls://).
func (s *Server) ClientURL() string {
	u := s.ns.ClientURL()
	if s.tls {
		if parsed, err := url.Parse(u); err == nil {
			parsed.Scheme = "tls"
			u = parsed.String()
		}
	}
	return u
}

// ClusterURL is this node's route URL, or "" when it is not clustered.
func (s *Server) ClusterURL() string {
	addr := s.ns.ClusterAddr()
	if addr == nil {
		return ""
	}
	return "nats-route://" + addr.String()
}

// InProcessConn connects to the server without a socket. Callers add their
// own credentials and options.
func (s *Server) InProcessConn(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(s.ns)}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect in-process: %w", err)
	}
	return nc, nil
}

// Close shuts the server down and waits until it has stopped. It is safe to
// call more than once.
func (s *Server) Close() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
