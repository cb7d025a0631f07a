package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/unibus/unibus/internal/exitcode"
)

// version is set at build time with -ldflags "-X main.version=…"; it must
// be a semantic version (micro services publish it).
var version = "0.1.0-dev"

// command is one unibusd subcommand.
type command interface {
	Run(ctx context.Context, args []string) error
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(exitCode(run(ctx, os.Args[1:])))
}

// run picks the subcommand: dev-certs, nats-config, or serve (the default).
func run(ctx context.Context, args []string) error {
	var cmd command = &serveCommand{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	if len(args) > 0 {
		switch args[0] {
		case "dev-certs":
			cmd, args = &devCertsCommand{Stdout: os.Stdout, Stderr: os.Stderr}, args[1:]
		case "nats-config":
			cmd, args = &natsConfigCommand{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}, args[1:]
		case "serve":
			args = args[1:]
		}
	}
	return cmd.Run(ctx, args)
}

// exitCode prints err, if any, and returns its exit code
// (internal/exitcode).
func exitCode(err error) int {
	if code := exitcode.Of(err); code != exitcode.OK {
		fmt.Fprintln(os.Stderr, "unibusd:", err)
		return code
	}
	return exitcode.OK
}
