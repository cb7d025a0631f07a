package embedded

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// DefaultPort is the NATS client port used when Config.Port is zero.
const DefaultPort = 4222

// DefaultHost is the client listen address when Config.Host is empty.
const DefaultHost = "127.0.0.1"

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

// RouteTLSTimeout bounds the TLS handshake of a route, in seconds: longer
// than nats-server's 2 s default, so that a loaded node does not drop a
// legitimate route. authcallout.RouteTLSTimeout, its twin in the printed
// configuration of an operator's servers, has the same value.
const RouteTLSTimeout = 5

// ClusterConfig joins the server to a NATS cluster over routes.
//
// A route sees every account's traffic and may publish into any account,
// so routes are always authorized (Username and Password), and a route
// listener beyond loopback needs TLS unless InsecureRoutes says otherwise.
type ClusterConfig struct {
	// Name is the cluster name shared by every node.
	Name string
	// Host and Port are where this node listens for routes (Port RandomPort
	// picks a free one). Host defaults to Config.Host.
	Host string
	Port int
	// Routes are the route URLs of the other nodes (nats-route://host:port).
	// Those without credentials get Username and Password: nats-server
	// presents only the credentials of a route's URL when it solicits one.
	Routes []string
	// Username and Password authorize routes, the same on every node
	// (authcallout.Keys.RouteCredentials derives them from the deployment
	// keys): the node accepts only routes that present them, and presents
	// them on the routes it solicits. Required.
	Username, Password string
	// TLS, when set, is the mutual TLS of routes (certs.RouteConfig): the
	// node presents its certificate and requires and verifies the peer's
	// against the deployment CA, whichever side opened the route.
	TLS *tls.Config
	// InsecureRoutes allows a route listener on an address other than
	// loopback without TLS. Routes are still authorized, but their
	// password and all traffic travel in the clear.
	InsecureRoutes bool
}

// IsLoopback reports whether host, a listen address without port, is
// reachable only from this machine: an IP address of 127.0.0.0/8 or ::1,
// or "localhost". Anything else, "0.0.0.0" and "" (every interface)
// included, is not.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// valid checks a cluster configuration whose node listens for clients on
// clientHost.
func (c ClusterConfig) valid(clientHost string) error {
	if c.Port < RandomPort || c.Port > 65535 {
		return fmt.Errorf("%w: cluster port %d out of range", ErrConfigValidation, c.Port)
	}
	if c.Username == "" || c.Password == "" {
		return fmt.Errorf("%w: routes need authorization: set the cluster's Username and Password (authcallout.Keys.RouteCredentials), or any process that reaches the route port joins the cluster", ErrConfigValidation)
	}
	if c.TLS != nil {
		t := c.TLS
		switch {
		case len(t.Certificates) == 0 && t.GetCertificate == nil:
			return fmt.Errorf("%w: route TLS has no certificate to present", ErrConfigValidation)
		case t.ClientAuth != tls.RequireAndVerifyClientCert || t.ClientCAs == nil:
			return fmt.Errorf("%w: route TLS must require and verify the peer's certificate against the CA (certs.RouteConfig)", ErrConfigValidation)
		case t.RootCAs == nil || t.InsecureSkipVerify:
			return fmt.Errorf("%w: route TLS must verify the nodes it connects to against the CA (certs.RouteConfig)", ErrConfigValidation)
		}
	}
	if host := cmp.Or(c.Host, clientHost); c.TLS == nil && !c.InsecureRoutes && !IsLoopback(host) {
		return fmt.Errorf("%w: the route listener on %s is not loopback and has no TLS: set the cluster's TLS (certs.RouteConfig), or InsecureRoutes to accept routes in the clear", ErrConfigValidation, host)
	}
	for _, r := range c.Routes {
		if _, err := url.Parse(r); err != nil {
			return fmt.Errorf("%w: route %q: %w", ErrConfigValidation, r, err)
		}
	}
	return nil
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
		return c.Cluster.valid(cmp.Or(c.Host, DefaultHost))
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
	host := cmp.Or(c.Host, DefaultHost)
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
		// Accepted routes must present these; solicited routes present
		// those of their URL, and gossiped ones these.
		opts.Cluster.Username, opts.Cluster.Password = c.Cluster.Username, c.Cluster.Password
		if c.Cluster.TLS != nil {
			opts.Cluster.TLSConfig = c.Cluster.TLS
			opts.Cluster.TLSTimeout = RouteTLSTimeout
		}
		for _, r := range c.Cluster.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("%w: route %q: %w", ErrConfigValidation, r, err)
			}
			if u.User == nil {
				u.User = url.UserPassword(c.Cluster.Username, c.Cluster.Password)
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
