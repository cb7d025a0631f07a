package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client"
)

// The environment variables of the unibus CLI, so that a bot runs with the
// same settings as its author's shell.
const (
	envIdentity = "UNIBUS_IDENTITY"
	envServer   = "UNIBUS_SERVER"
	envCA       = "UNIBUS_CA"
)

// Exit codes, as for the unibus CLI.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitRefused     = 3
	exitUnavailable = 69
)

func main() {
	// SIGINT and SIGTERM cancel ctx; Run then stops cleanly and returns nil.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, os.Args[1:], os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run parses the flags, runs the worker and maps its error to an exit code.
func run(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	w := &worker{}
	fs.StringVar(&w.IdentityFile, "identity", getenv(envIdentity), "identity seed file of the bot (env "+envIdentity+")")
	fs.StringVar(&w.Server, "server", envOr(getenv, envServer, "nats://127.0.0.1:4222"), "NATS server URL (env "+envServer+")")
	fs.StringVar(&w.CA, "ca", getenv(envCA), "CA certificate file: require TLS signed by it (env "+envCA+")")
	fs.DurationVar(&w.Poll, "poll", 3*time.Second, "how often to look for new invitations")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "worker: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if w.IdentityFile == "" {
		fmt.Fprintf(stderr, "worker: no identity: use --identity FILE or set %s\n", envIdentity)
		return exitUsage
	}
	if w.Poll <= 0 {
		fmt.Fprintf(stderr, "worker: --poll must be positive, got %s\n", w.Poll)
		return exitUsage
	}
	w.Logger = slog.New(slog.NewTextHandler(stderr, nil))

	err := w.Run(ctx)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthRevoked),
		errors.Is(err, client.ErrUnauthenticated), errors.Is(err, client.ErrForbidden):
		fmt.Fprintf(stderr, "worker: %v (is the bot registered? `unibus users add PUB`)\n", err)
		return exitRefused
	case errors.Is(err, client.ErrConnect), errors.Is(err, nats.ErrNoServers):
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return exitUnavailable
	default:
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return exitError
	}
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
