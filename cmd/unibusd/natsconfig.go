package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/unibus/unibus/authcallout"
)

// natsConfigCommand prints the nats-server configuration an operator's
// servers need for unibusd to attach to them, creating the deployment
// credentials it is derived from when they do not exist yet.
type natsConfigCommand struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// natsConfigHeader explains the printed configuration to the operator.
const natsConfigHeader = `# Include this file in the configuration of every nats-server of the
# deployment (identical on each), e.g.  include "unibus.conf"
# and enable JetStream in the same file:  jetstream { store_dir: "/var/lib/nats" }
# Then run the services:  unibusd --nats nats://host:4222 --creds %s
# It holds public keys only; the credentials file is secret.
`

// Run parses args and prints (or writes) the configuration.
func (c *natsConfigCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("unibusd nats-config", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	creds := fs.String("creds", c.Getenv("UNIBUS_CREDS"), "deployment credentials file: read, or created (mode 0600) when missing (env UNIBUS_CREDS)")
	xkey := fs.Bool("xkey", false, "when creating credentials, add an xkey that encrypts the callout exchange")
	out := fs.String("out", "", "write the configuration to this file instead of standard output")
	maxPublish := fs.Int64("max-publish-bytes", authcallout.DefaultMaxPublishBytes, "largest message a peer may publish (account limit; give unibusd the same)")
	maxSubs := fs.Int64("max-subscriptions", authcallout.DefaultMaxSubscriptions, "subscriptions per peer connection (-1: no limit)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *creds == "" {
		return fmt.Errorf("%w: --creds FILE is required: the deployment credentials every unibusd of the cluster shares", errUsage)
	}
	// Check the limits before creating anything.
	limits := authcallout.PeerLimits{MaxPublishBytes: *maxPublish, MaxSubscriptions: *maxSubs}
	if err := limits.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	keys, created, err := authcallout.LoadOrCreateKeysFile(*creds, *xkey)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(c.Stderr, "wrote new deployment credentials to %s (secret: copy it to every unibusd host, mode 0600)\n", *creds)
	}
	conf, err := authcallout.NATSConfigWithLimits(keys, limits)
	if err != nil {
		return err
	}
	text := fmt.Sprintf(natsConfigHeader, *creds) + conf
	if *out == "" {
		_, err := io.WriteString(c.Stdout, text)
		return err
	}
	return writeFileAtomic(*out, []byte(text), 0o644)
}

// writeFileAtomic replaces path with content through a temporary file in
// the same directory, so that a reader never sees half a file.
func writeFileAtomic(path string, content []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
