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

	"github.com/unibus/unibus/embedded"
)

// errUsage marks errors caused by bad command-line input (exit code 2).
var errUsage = errors.New("usage")

// serveCommand runs the embedded server until its context ends.
type serveCommand struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// ready, when set, receives the running server (tests).
	ready func(*embedded.Server)
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

// Run parses args, starts the server and blocks until ctx is done.
func (c *serveCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("unibusd", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	host := fs.String("host", "127.0.0.1", "client listen address")
	port := fs.Int("port", embedded.DefaultPort, "client port (-1 picks a free port)")
	data := fs.String("data", defaultDataDir(c.Getenv), "data directory for JetStream storage (env UNIBUS_DATA)")
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
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: level}))

	srv, err := embedded.Start(embedded.Config{Host: *host, Port: *port, DataDir: *data, Logger: logger})
	if err != nil {
		return fmt.Errorf("start embedded server: %w", err)
	}
	defer srv.Close()
	logger.Info("unibusd ready", "version", version, "url", srv.ClientURL(), "data", *data)
	fmt.Fprintf(c.Stdout, "unibus is ready: clients connect to %s (data in %s)\n", srv.ClientURL(), *data)
	if c.ready != nil {
		c.ready(srv)
	}
	<-ctx.Done()
	logger.Info("unibusd shutting down")
	return nil
}
