package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := &serveCommand{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	err := cmd.Run(ctx, os.Args[1:])
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "unibusd:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "unibusd:", err)
		os.Exit(1)
	}
}
