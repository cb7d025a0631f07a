package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/svc"
)

// errUsage marks errors caused by bad command-line input (exit code 2).
var errUsage = errors.New("usage")

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

// Run parses args, starts the node and blocks until ctx is done.
func (c *serveCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("unibusd", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	host := fs.String("host", "127.0.0.1", "client listen address")
	port := fs.Int("port", embedded.DefaultPort, "client port (-1 picks a free port)")
	data := fs.String("data", defaultDataDir(c.Getenv), "data directory for JetStream storage (env UNIBUS_DATA)")
	admin := fs.String("admin", c.Getenv("UNIBUS_ADMIN"), "public key (U…) made admin at start (env UNIBUS_ADMIN)")
	tlsCert := fs.String("tls-cert", "", "server certificate PEM: serve TLS (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "server private key PEM")
	xkey := fs.Bool("xkey", false, "encrypt the auth callout exchange with an xkey")
	replicas := fs.Int("replicas", 1, "replicas of every KV bucket (1..5)")
	opTimeout := fs.Duration("op-timeout", kvstore.DefaultOpTimeout, "bound on every store operation")
	userTTL := fs.Duration("user-ttl", authcallout.DefaultUserTTL, "lifetime of issued user JWTs (permissions refresh)")
	authMode := fs.String("auth-mode", string(svc.AuthEnforce), "signed-request checks: enforce, soft (log and allow) or off (development only)")
	maxSkew := fs.Duration("max-skew", svc.DefaultMaxSkew, "accepted clock skew of signed requests")
	requireEncrypted := fs.Bool("require-encrypted-rooms", false, "refuse cleartext rooms (403)")
	verbose := fs.Bool("v", false, "log debug detail")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *showVersion {
		fmt.Fprintln(c.Stdout, "unibusd", version)
		return nil
	}
	if (*tlsCert == "") != (*tlsKey == "") {
		return fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := node.Config{
		Server:  embedded.Config{Host: *host, Port: *port, DataDir: *data},
		Store:   kvstore.Config{Replicas: *replicas, OpTimeout: *opTimeout},
		XKey:    *xkey,
		Callout: authcallout.Config{UserTTL: *userTTL},
		Services: svc.Config{
			Version:               version,
			AuthMode:              svc.AuthMode(*authMode),
			MaxSkew:               *maxSkew,
			RequireEncryptedRooms: *requireEncrypted,
		},
		Admin:  *admin,
		Logger: logger,
	}
	if *tlsCert != "" {
		tlsConf, err := certs.ServerConfig(*tlsCert, *tlsKey)
		if err != nil {
			return fmt.Errorf("load TLS key pair: %w", err)
		}
		cfg.Server.TLS = tlsConf
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	n, err := node.Start(startCtx, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("start unibus node: %w", err)
	}
	defer n.Close()
	logger.Info("unibusd ready", "version", version, "url", n.ClientURL(), "data", *data)
	fmt.Fprintf(c.Stdout, "unibus is ready: clients connect to %s (data in %s)\n", n.ClientURL(), *data)
	if *admin == "" {
		fmt.Fprintln(c.Stdout, "no admin yet: restart with --admin U… or UNIBUS_ADMIN=U… to add the first one")
	}
	if c.ready != nil {
		c.ready(n)
	}
	<-ctx.Done()
	logger.Info("unibusd shutting down")
	return nil
}
