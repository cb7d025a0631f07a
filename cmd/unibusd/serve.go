package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/router"
	"github.com/unibus/unibus/svc"
)

// serveCommand runs a unibus node (embedded nats-server, auth callout,
// services) until its context ends.
type serveCommand struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// ready, when set, receives the running node (tests).
	ready func(*node.Node)
}

// defaultDataDir is $UNIBUS_DATA, else $XDG_DATA_HOME/unibus, else
// ~/.local/share/unibus.
func defaultDataDir(getenv func(string) string) string {
	if d := getenv("UNIBUS_DATA"); d != "" {
		return d
	}
	if d := getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "unibus")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "unibus")
	}
	return "unibus-data"
}

// serveOptions are unibusd's settings: flags, environment, config file.
type serveOptions struct {
	host, data, admin                 string
	port                              int
	tlsCert, tlsKey                   string
	xkey                              bool
	serverName                        string
	clusterName, clusterHost, routes  string
	clusterPort                       int
	clusterTLSCert, clusterTLSKey     string
	clusterCA                         string
	insecureRoutes, insecure          bool
	natsURL, natsCA, creds            string
	replicas                          int
	opTimeout, userTTL, maxSkew       time.Duration
	authMode                          string
	requireEncrypted, verbose, asJSON bool
	showVersion                       bool
	config                            string
	limits                            limitOptions
}

// limitOptions are the sizes, counts and rates that bound what one peer
// may make the deployment do.
type limitOptions struct {
	maxRequestBytes, maxBundleBytes    int
	maxPublishBytes, maxSubscriptions  int64
	maxMembersPerRoom, maxRoomsPerUser int
	rateLimit                          float64
	rateBurst, workers                 int
	requestTimeout                     time.Duration
	storage                            storageOptions
	delivery                           deliveryOptions
}

// deliveryOptions bound the routing service and the room log: how large
// and how fast members' frames may be, and how long and how many of them
// the log keeps.
type deliveryOptions struct {
	maxFrameBytes         int
	sendRate              float64
	sendBurst             int
	historyMaxAge         time.Duration
	historyMaxMsgsPerRoom int64
}

// flags declares the delivery flags.
func (d *deliveryOptions) flags(fs *flag.FlagSet) {
	fs.IntVar(&d.maxFrameBytes, "max-frame-bytes", router.DefaultMaxFrameBytes,
		"largest frame a member may send (413 beyond); above the default, --max-publish-bytes must hold its history reply (4/3 of it, plus 16 KiB)")
	fs.Float64Var(&d.sendRate, "send-rate", router.DefaultSendRate, "frames per second each member may send through each router instance (429 beyond; -1: off)")
	fs.IntVar(&d.sendBurst, "send-burst", router.DefaultSendBurst, "frames a member may send at once before --send-rate applies")
	fs.DurationVar(&d.historyMaxAge, "history-max-age", kvstore.DefaultHistoryMaxAge,
		"how long the room log keeps frames (rooms may keep theirs for less); at least 1m")
	fs.Int64Var(&d.historyMaxMsgsPerRoom, "history-max-msgs-per-room", kvstore.DefaultHistoryMaxMsgsPerRoom,
		"frames the room log keeps per room, the oldest going first (-1: no limit)")
}

// check refuses the values that are no limit at all: zero would quietly
// mean the default.
func (d *deliveryOptions) check() error {
	for _, z := range []struct {
		zero bool
		name string
		hint string
	}{
		{d.maxFrameBytes == 0, "--max-frame-bytes", "give a size in bytes"},
		{d.sendRate == 0, "--send-rate", "give frames per second, or -1 to turn the limit off"},
		{d.sendBurst == 0, "--send-burst", "give a number of frames, at least 1"},
		{d.historyMaxAge == 0, "--history-max-age", "give a duration of at least 1m"},
		{d.historyMaxMsgsPerRoom == 0, "--history-max-msgs-per-room", "give a number of frames, or -1 for no limit"},
	} {
		if z.zero {
			return fmt.Errorf("%w: %s 0 is no limit: %s", exitcode.ErrUsage, z.name, z.hint)
		}
	}
	if d.sendRate < 0 && d.sendRate != -1 {
		return fmt.Errorf("%w: --send-rate %g: give frames per second, or -1 to turn the limit off", exitcode.ErrUsage, d.sendRate)
	}
	return nil
}

// apply puts the delivery limits into a node configuration; the router
// and the store check them when the node starts.
func (d *deliveryOptions) apply(cfg *node.Config) {
	cfg.Router.MaxFrameBytes = d.maxFrameBytes
	cfg.Router.SendRate, cfg.Router.SendBurst = d.sendRate, d.sendBurst
	cfg.Store.HistoryMaxAge = d.historyMaxAge
	cfg.Store.HistoryMaxMsgsPerRoom = d.historyMaxMsgsPerRoom
}

// storageOptions bound what the deployment stores: the account's
// JetStream storage, the object store of blobs within it, and each user's
// and room's blobs within that.
type storageOptions struct {
	maxFileStore, maxMemoryStore             int64
	blobStoreMaxBytes, historyMaxBytes       int64
	maxBlobBytes                             int64
	maxBlobBytesPerUser, maxBlobBytesPerRoom int64
	blobUploadTimeout                        time.Duration
}

// accountFlags declares the flags of the account's JetStream storage,
// which both unibusd and unibusd nats-config take.
func (s *storageOptions) accountFlags(fs *flag.FlagSet) {
	fs.Int64Var(&s.maxFileStore, "max-file-store", authcallout.DefaultMaxFileStore,
		"JetStream file storage of account UNIBUS in bytes, every replica counted (-1: only the servers' limit); blobs take half and the room log a quarter, the KV buckets and events keep the rest (an account limit: attached, give nats-config the same)")
	fs.Int64Var(&s.maxMemoryStore, "max-memory-store", authcallout.DefaultMaxMemoryStore,
		"JetStream memory storage of account UNIBUS in bytes (-1: only the servers' limit; an account limit like --max-file-store)")
}

// flags declares the storage flags of unibusd.
func (s *storageOptions) flags(fs *flag.FlagSet) {
	s.accountFlags(fs)
	fs.Int64Var(&s.blobStoreMaxBytes, "blob-store-max-bytes", 0,
		"size of the object store of blobs per replica (0: half of --max-file-store divided by --replicas; blobs and the room log together never more than three quarters)")
	fs.Int64Var(&s.historyMaxBytes, "history-max-bytes", 0,
		"size of the room log per replica, the oldest frames of any room going first (0: a quarter of --max-file-store divided by --replicas; -1: no bound of its own, only without an account limit)")
	fs.Int64Var(&s.maxBlobBytes, "max-blob-bytes", svc.DefaultMaxBlobBytes, "largest blob (413 beyond)")
	fs.Int64Var(&s.maxBlobBytesPerUser, "max-blob-bytes-per-user", svc.DefaultMaxBlobBytesPerUser,
		"blob quota of each user, all rooms together, uploads in progress included (413 beyond; -1: no limit)")
	fs.Int64Var(&s.maxBlobBytesPerRoom, "max-blob-bytes-per-room", svc.DefaultMaxBlobBytesPerRoom,
		"blob quota of each room, whoever uploads (413 beyond; -1: no limit)")
	fs.DurationVar(&s.blobUploadTimeout, "blob-upload-timeout", svc.DefaultBlobUploadTimeout,
		"time an upload has from its first chunk to its last; then it is removed and its quota freed (at least twice --request-timeout)")
}

// apply puts the storage limits into a node configuration.
func (s *storageOptions) apply(cfg *node.Config) {
	cfg.Callout.Limits.MaxFileStore, cfg.Callout.Limits.MaxMemoryStore = s.maxFileStore, s.maxMemoryStore
	cfg.Store.BlobStoreMaxBytes = s.blobStoreMaxBytes
	cfg.Store.HistoryMaxBytes = s.historyMaxBytes
	cfg.Services.MaxBlobBytes = s.maxBlobBytes
	cfg.Services.MaxBlobBytesPerUser, cfg.Services.MaxBlobBytesPerRoom = s.maxBlobBytesPerUser, s.maxBlobBytesPerRoom
	cfg.Services.BlobUploadTimeout = s.blobUploadTimeout
}

// flags declares the limit flags (every one also a config file setting).
func (l *limitOptions) flags(fs *flag.FlagSet) {
	fs.IntVar(&l.maxRequestBytes, "max-request-bytes", svc.DefaultMaxRequestBytes, "largest control-plane request body (413 beyond)")
	fs.IntVar(&l.maxBundleBytes, "max-bundle-bytes", svc.DefaultMaxBundleBytes, "largest body of requests carrying sealed room keys or blob chunks (413 beyond)")
	fs.Int64Var(&l.maxPublishBytes, "max-publish-bytes", authcallout.DefaultMaxPublishBytes, "largest message a peer may publish (frames and requests); at least --max-bundle-bytes + 16 KiB")
	fs.Int64Var(&l.maxSubscriptions, "max-subscriptions", authcallout.DefaultMaxSubscriptions, "subscriptions per peer connection (-1: no limit)")
	fs.IntVar(&l.maxMembersPerRoom, "max-members-per-room", svc.DefaultMaxMembersPerRoom, "members of a room, owner included (409 beyond; -1: no limit)")
	fs.IntVar(&l.maxRoomsPerUser, "max-rooms-per-user", svc.DefaultMaxRoomsPerUser, "rooms a user may belong to (409 beyond; -1: no limit)")
	fs.Float64Var(&l.rateLimit, "rate-limit", svc.DefaultRateLimit, "control-plane requests per second per identity and service instance (429 beyond; -1: off)")
	fs.IntVar(&l.rateBurst, "rate-burst", svc.DefaultRateBurst, "requests an identity may make at once before --rate-limit applies")
	fs.IntVar(&l.workers, "workers", 0, "requests each service handles at once (0: 4 × CPUs)")
	fs.DurationVar(&l.requestTimeout, "request-timeout", svc.DefaultRequestTimeout, "bound on each control-plane request, queueing included (503 beyond)")
	l.storage.flags(fs)
	l.delivery.flags(fs)
}

// apply puts the limits into a node configuration.
func (l *limitOptions) apply(cfg *node.Config) {
	cfg.Services.MaxRequestBytes = l.maxRequestBytes
	cfg.Services.MaxBundleBytes = l.maxBundleBytes
	cfg.Services.MaxMembersPerRoom = l.maxMembersPerRoom
	cfg.Services.MaxRoomsPerUser = l.maxRoomsPerUser
	cfg.Services.RateLimit = l.rateLimit
	cfg.Services.RateBurst = l.rateBurst
	cfg.Services.Workers = l.workers
	cfg.Services.RequestTimeout = l.requestTimeout
	cfg.Callout.Limits = authcallout.PeerLimits{MaxPublishBytes: l.maxPublishBytes, MaxSubscriptions: l.maxSubscriptions}
	l.storage.apply(cfg)
	l.delivery.apply(cfg)
}

// envFlags returns the flags an environment variable may set, by flag name.
func envFlags() map[string]string {
	return map[string]string{"data": "UNIBUS_DATA", "admin": "UNIBUS_ADMIN", "creds": "UNIBUS_CREDS", "config": "UNIBUS_CONFIG"}
}

// flags declares unibusd's flags on fs; defaults come from the environment
// where envFlags says so. Every flag is also a config file setting.
func (o *serveOptions) flags(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&o.config, "config", getenv("UNIBUS_CONFIG"), "configuration file in the NATS format, one setting per flag (env UNIBUS_CONFIG)")
	fs.StringVar(&o.host, "host", "127.0.0.1", "client listen address")
	fs.IntVar(&o.port, "port", embedded.DefaultPort, "client port (-1 picks a free port)")
	fs.StringVar(&o.data, "data", defaultDataDir(getenv), "data directory for JetStream storage (env UNIBUS_DATA)")
	fs.StringVar(&o.admin, "admin", getenv("UNIBUS_ADMIN"), "public key (U…) made admin at start (env UNIBUS_ADMIN)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "server certificate PEM: serve TLS (with --tls-key)")
	fs.StringVar(&o.tlsKey, "tls-key", "", "server private key PEM")
	fs.BoolVar(&o.xkey, "xkey", false, "encrypt the auth callout exchange with an xkey (fresh keys only; a --creds file decides for itself)")
	fs.StringVar(&o.creds, "creds", getenv("UNIBUS_CREDS"), "deployment credentials file made by unibusd nats-config: required to attach or to cluster, created when missing in embedded mode (env UNIBUS_CREDS)")
	fs.StringVar(&o.serverName, "name", "", "server name (required in a cluster; unique per node)")
	fs.StringVar(&o.clusterName, "cluster-name", "", "join a NATS cluster of this name (embedded mode)")
	fs.StringVar(&o.clusterHost, "cluster-host", "", "route listen address (default: --host)")
	fs.IntVar(&o.clusterPort, "cluster-port", authcallout.DefaultRoutePort, "route listen port (-1 picks a free port)")
	fs.StringVar(&o.routes, "routes", "", "comma-separated route URLs of the other nodes (nats-route://host:6222,…)")
	fs.StringVar(&o.clusterTLSCert, "cluster-tls-cert", "", "route certificate PEM, valid for server and client authentication: mutual TLS on routes (with --cluster-tls-key and --cluster-ca)")
	fs.StringVar(&o.clusterTLSKey, "cluster-tls-key", "", "route private key PEM")
	fs.StringVar(&o.clusterCA, "cluster-ca", "", "deployment CA certificate PEM that every node's route certificate must be signed by")
	fs.BoolVar(&o.insecureRoutes, "insecure-routes", false, "allow a route listener beyond loopback without TLS (routes stay authorized, but travel in the clear)")
	fs.BoolVar(&o.insecure, "insecure", false, "allow --auth-mode soft or off with clients beyond loopback (anyone who connects may send unsigned requests)")
	fs.StringVar(&o.natsURL, "nats", "", "attach to an operator's nats-server at this URL (comma-separated for a cluster) instead of embedding one")
	fs.StringVar(&o.natsCA, "nats-ca", "", "CA certificate PEM to verify the --nats servers (TLS)")
	fs.IntVar(&o.replicas, "replicas", 1, "replicas of every KV bucket (1..5; 3 on a 3-node cluster)")
	fs.DurationVar(&o.opTimeout, "op-timeout", kvstore.DefaultOpTimeout, "bound on every store operation")
	fs.DurationVar(&o.userTTL, "user-ttl", authcallout.DefaultUserTTL, "lifetime of issued user JWTs (permissions refresh)")
	fs.StringVar(&o.authMode, "auth-mode", string(svc.AuthEnforce), "signed-request checks: enforce, soft (log and allow) or off (development only)")
	fs.DurationVar(&o.maxSkew, "max-skew", svc.DefaultMaxSkew, "accepted clock skew of signed requests")
	fs.BoolVar(&o.requireEncrypted, "require-encrypted-rooms", false, "refuse cleartext rooms (403)")
	fs.BoolVar(&o.verbose, "v", false, "log debug detail")
	fs.BoolVar(&o.asJSON, "log-json", false, "write logs as JSON lines instead of text")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	o.limits.flags(fs)
}

// parse reads args, then the config file for whatever args and the
// environment left unset.
func (o *serveOptions) parse(name string, args []string, stderr io.Writer, getenv func(string) string) (*flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.flags(fs, getenv)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return fs, err
		}
		return fs, fmt.Errorf("%w: %w", exitcode.ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fs, fmt.Errorf("%w: unexpected argument %q", exitcode.ErrUsage, fs.Arg(0))
	}
	if o.config != "" {
		explicit, fromEnv := map[string]bool{}, map[string]bool{}
		fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
		for name, env := range envFlags() {
			fromEnv[name] = getenv(env) != ""
		}
		if err := applyConfigFile(fs, o.config, explicit, fromEnv); err != nil {
			return fs, err
		}
	}
	return fs, nil
}

// nodeConfig checks the combination of settings and builds the node's
// configuration.
func (o *serveOptions) nodeConfig(logger *slog.Logger) (node.Config, error) {
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return node.Config{}, fmt.Errorf("%w: --tls-cert and --tls-key go together", exitcode.ErrUsage)
	}
	if err := o.checkAuthMode(); err != nil {
		return node.Config{}, err
	}
	if err := o.limits.delivery.check(); err != nil {
		return node.Config{}, err
	}
	cfg := node.Config{
		Server:   embedded.Config{Host: o.host, Port: o.port, DataDir: o.data, ServerName: o.serverName},
		Store:    kvstore.Config{Replicas: o.replicas, OpTimeout: o.opTimeout, NonceTTL: svc.MinNonceTTL(o.maxSkew)},
		XKey:     o.xkey,
		Callout:  authcallout.Config{UserTTL: o.userTTL},
		Services: svc.Config{Version: version, AuthMode: svc.AuthMode(o.authMode), MaxSkew: o.maxSkew, RequireEncryptedRooms: o.requireEncrypted},
		Admin:    o.admin,
		Logger:   logger,
	}
	o.limits.apply(&cfg)
	if o.natsURL != "" {
		// Attached: the operator's servers listen, cluster and store.
		for _, embeddedOnly := range []struct {
			set  bool
			name string
		}{
			{o.tlsCert != "", "--tls-cert"}, {o.clusterName != "", "--cluster-name"}, {o.routes != "", "--routes"}, {o.serverName != "", "--name"},
			{o.clusterTLSCert != "", "--cluster-tls-cert"}, {o.clusterTLSKey != "", "--cluster-tls-key"}, {o.clusterCA != "", "--cluster-ca"},
		} {
			if embeddedOnly.set {
				return node.Config{}, fmt.Errorf("%w: %s configures the embedded server; with --nats the operator's servers are configured by their own files", exitcode.ErrUsage, embeddedOnly.name)
			}
		}
		if o.creds == "" {
			return node.Config{}, fmt.Errorf("%w: --nats needs --creds FILE, the deployment credentials the servers' configuration was printed from (unibusd nats-config --creds FILE)", exitcode.ErrUsage)
		}
		keys, err := authcallout.ReadKeysFile(o.creds)
		if err != nil {
			return node.Config{}, err
		}
		cfg.Keys, cfg.NATSURL = &keys, o.natsURL
		if o.natsCA != "" {
			tlsConf, err := certs.ClientConfig(o.natsCA)
			if err != nil {
				return node.Config{}, fmt.Errorf("load --nats-ca: %w", err)
			}
			cfg.NATSTLS = tlsConf
		}
		return cfg, nil
	}
	if o.natsCA != "" {
		return node.Config{}, fmt.Errorf("%w: --nats-ca goes with --nats", exitcode.ErrUsage)
	}
	if o.clusterName != "" {
		cluster, err := o.clusterConfig()
		if err != nil {
			return node.Config{}, err
		}
		cfg.Server.Cluster = cluster
	} else {
		for _, clusterOnly := range []struct {
			set  bool
			name string
		}{{o.routes != "", "--routes"}, {o.clusterTLSCert != "", "--cluster-tls-cert"}, {o.clusterTLSKey != "", "--cluster-tls-key"}, {o.clusterCA != "", "--cluster-ca"}} {
			if clusterOnly.set {
				return node.Config{}, fmt.Errorf("%w: %s needs --cluster-name", exitcode.ErrUsage, clusterOnly.name)
			}
		}
	}
	if o.creds != "" {
		keys, created, err := authcallout.LoadOrCreateKeysFile(o.creds, o.xkey)
		if err != nil {
			return node.Config{}, err
		}
		if created {
			logger.Info("wrote new deployment credentials", "creds", o.creds)
		}
		cfg.Keys = &keys
	}
	if o.clusterName != "" {
		// Routes present and demand credentials derived from the
		// deployment keys, the same on every node.
		user, password, err := cfg.Keys.RouteCredentials()
		if err != nil {
			return node.Config{}, fmt.Errorf("route credentials from %s: %w", o.creds, err)
		}
		cfg.Server.Cluster.Username, cfg.Server.Cluster.Password = user, password
	}
	if o.tlsCert != "" {
		tlsConf, err := certs.ServerConfig(o.tlsCert, o.tlsKey)
		if err != nil {
			return node.Config{}, fmt.Errorf("load TLS key pair: %w", err)
		}
		cfg.Server.TLS = tlsConf
	}
	return cfg, nil
}

// clusterConfig checks the cluster settings and builds the routes'
// configuration, route TLS loaded, before anything is created: all but
// the route credentials, which come from the deployment keys.
func (o *serveOptions) clusterConfig() (embedded.ClusterConfig, error) {
	if o.serverName == "" {
		return embedded.ClusterConfig{}, fmt.Errorf("%w: a cluster node needs --name, unique in the cluster", exitcode.ErrUsage)
	}
	if o.creds == "" {
		return embedded.ClusterConfig{}, fmt.Errorf("%w: a cluster node needs --creds FILE, the same file on every node (unibusd nats-config --creds FILE makes one)", exitcode.ErrUsage)
	}
	var routes []string
	for r := range strings.SplitSeq(o.routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			routes = append(routes, r)
		}
	}
	cluster := embedded.ClusterConfig{Name: o.clusterName, Host: o.clusterHost, Port: o.clusterPort, Routes: routes, InsecureRoutes: o.insecureRoutes}
	set := 0
	for _, f := range []string{o.clusterTLSCert, o.clusterTLSKey, o.clusterCA} {
		if f != "" {
			set++
		}
	}
	switch {
	case set == 3:
		routeTLS, err := certs.RouteConfig(o.clusterTLSCert, o.clusterTLSKey, o.clusterCA)
		if err != nil {
			return embedded.ClusterConfig{}, fmt.Errorf("load route TLS (--cluster-tls-cert, --cluster-tls-key, --cluster-ca): %w", err)
		}
		cluster.TLS = routeTLS
	case set != 0:
		return embedded.ClusterConfig{}, fmt.Errorf("%w: --cluster-tls-cert, --cluster-tls-key and --cluster-ca go together: routes use mutual TLS with the deployment CA", exitcode.ErrUsage)
	}
	host := cmp.Or(o.clusterHost, o.host, embedded.DefaultHost)
	if cluster.TLS == nil && !o.insecureRoutes && !embedded.IsLoopback(host) {
		return embedded.ClusterConfig{}, fmt.Errorf("%w: the route listener %s is not loopback, and routes without TLS would carry every account's traffic and the route password in the clear: "+
			"give --cluster-tls-cert, --cluster-tls-key and --cluster-ca (certificates of the deployment CA; unibusd dev-certs makes a test one), "+
			"listen for routes on loopback (--cluster-host 127.0.0.1), or accept plaintext routes with --insecure-routes", exitcode.ErrUsage, host)
	}
	return cluster, nil
}

// checkAuthMode refuses the signed-request modes that let unsigned
// requests through (soft, off) when clients beyond this machine can reach
// the services, unless --insecure says so: the client listener (--host)
// in embedded mode, the servers of --nats when attached.
func (o *serveOptions) checkAuthMode() error {
	mode := svc.AuthMode(o.authMode)
	if (mode != svc.AuthSoft && mode != svc.AuthOff) || o.insecure {
		return nil
	}
	exposed, fix := "", ""
	if o.natsURL != "" {
		for raw := range strings.SplitSeq(o.natsURL, ",") {
			if raw = strings.TrimSpace(raw); !strings.Contains(raw, "://") {
				raw = "nats://" + raw // as nats.go reads it
			}
			u, err := url.Parse(raw)
			if err != nil || !embedded.IsLoopback(u.Hostname()) {
				exposed, fix = "--nats "+o.natsURL, "attach to servers on loopback only"
				break
			}
		}
	} else if host := cmp.Or(o.host, embedded.DefaultHost); !embedded.IsLoopback(host) {
		exposed, fix = "--host "+o.host, "serve clients on loopback only (--host 127.0.0.1)"
	}
	if exposed == "" {
		return nil
	}
	return fmt.Errorf("%w: --auth-mode %s lets unsigned control-plane requests through, and clients reach the services beyond loopback (%s): "+
		"use --auth-mode enforce, %s, or give --insecure to accept it", exitcode.ErrUsage, o.authMode, exposed, fix)
}

// Run parses args, starts the node and blocks until ctx is done.
func (c *serveCommand) Run(ctx context.Context, args []string) error {
	var o serveOptions
	if _, err := o.parse("unibusd", args, c.Stderr, c.Getenv); err != nil {
		return err
	}
	if o.showVersion {
		fmt.Fprintln(c.Stdout, "unibusd", version)
		return nil
	}
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	handlerOpts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(c.Stderr, handlerOpts)
	if o.asJSON {
		handler = slog.NewJSONHandler(c.Stderr, handlerOpts)
	}
	logger := slog.New(handler)
	cfg, err := o.nodeConfig(logger)
	if err != nil {
		return err
	}
	// A cluster forming elects its JetStream leaders within this bound.
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	n, err := node.Start(startCtx, cfg)
	cancel()
	if err != nil && o.natsURL != "" {
		return fmt.Errorf("attach to %s: %w (the servers must run the configuration `unibusd nats-config --creds %s` prints, and be reachable)", o.natsURL, err, o.creds)
	}
	if err != nil {
		return fmt.Errorf("start unibus node: %w", err)
	}
	defer n.Close()
	if o.natsURL != "" {
		logger.Info("unibusd ready (attached)", "version", version, "nats", n.ClientURL())
		fmt.Fprintf(c.Stdout, "unibus services are ready, attached to %s: clients connect there\n", n.ClientURL())
	} else {
		logger.Info("unibusd ready", "version", version, "url", n.ClientURL(), "data", o.data, "cluster", o.clusterName)
		fmt.Fprintf(c.Stdout, "unibus is ready: clients connect to %s (data in %s)\n", n.ClientURL(), o.data)
	}
	if o.admin == "" {
		fmt.Fprintln(c.Stdout, "no admin given: add the first one with --admin U… or UNIBUS_ADMIN=U… (existing admins are kept)")
	}
	if c.ready != nil {
		c.ready(n)
	}
	<-ctx.Done()
	logger.Info("unibusd shutting down")
	return nil
}
