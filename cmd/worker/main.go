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
	"strings"
	"syscall"

	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/internal/envvar"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/subjects"
)

// The environment variables of the unibus CLI, so that a bot runs with the
// same settings as its author's shell.
const (
	envIdentity = "UNIBUS_IDENTITY"
	envServer   = "UNIBUS_SERVER"
	envCA       = "UNIBUS_CA"
	envInsecure = "UNIBUS_INSECURE"
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
	fs.StringVar(&w.Server, "server", envvar.Or(getenv, envServer, "nats://127.0.0.1:4222"), "NATS server URL (env "+envServer+")")
	fs.StringVar(&w.CA, "ca", getenv(envCA), "CA certificate file: require TLS signed by it (env "+envCA+")")
	insecure, insecureErr := envvar.Bool(getenv, envInsecure)
	fs.BoolVar(&w.Insecure, "insecure", insecure, "allow a plaintext (nats://) server URL beyond loopback: anyone on the path can read and rewrite it (env "+envInsecure+"=1)")
	fs.StringVar(&w.CursorFile, "cursor", "", "file that keeps the bot's place in its rooms across restarts (default: the identity file + "+CursorSuffix+")")
	acceptFrom := fs.String("accept-from", "", "accept only the invitations of these room owners (comma-separated public keys); default: every invitation")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitcode.OK
		}
		return exitcode.Usage
	}
	insecureSet := false
	fs.Visit(func(f *flag.Flag) { insecureSet = insecureSet || f.Name == "insecure" })
	if insecureErr != nil && !insecureSet {
		fmt.Fprintf(stderr, "worker: %v\n", insecureErr)
		return exitcode.Usage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "worker: unexpected argument %q\n", fs.Arg(0))
		return exitcode.Usage
	}
	if w.IdentityFile == "" {
		fmt.Fprintf(stderr, "worker: no identity: use --identity FILE or set %s\n", envIdentity)
		return exitcode.Usage
	}
	if *acceptFrom != "" {
		for _, s := range strings.Split(*acceptFrom, ",") {
			pub, err := subjects.NormalizeUserKey(s)
			if err != nil {
				fmt.Fprintf(stderr, "worker: --accept-from: %v\n", err)
				return exitcode.Usage
			}
			w.AcceptFrom = append(w.AcceptFrom, pub)
		}
	}
	w.Logger = slog.New(slog.NewTextHandler(stderr, nil))

	err := w.Run(ctx)
	code := exitcode.Of(err)
	if err == nil {
		return code
	}
	fmt.Fprintf(stderr, "worker: %v\n", err)
	switch {
	case errors.Is(err, client.ErrInsecureURL):
		fmt.Fprintf(stderr, "worker: give a tls:// --server (with --ca to pin its CA), or pass --insecure (or set %s=1) to allow plaintext on a network you trust\n", envInsecure)
	case errors.Is(err, certs.ErrPlaintextURL):
		fmt.Fprintln(stderr, "worker: --ca pins TLS: give a tls:// --server")
	case code == exitcode.Refused:
		fmt.Fprintln(stderr, "worker: is the bot registered? `unibus users add PUB`")
	}
	return code
}
