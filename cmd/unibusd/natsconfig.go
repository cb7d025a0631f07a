package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/internal/exitcode"
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
# Secret: besides public keys it holds the route password of the cluster
# block below (mode 0600, like the credentials file).
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
	var storage storageOptions
	storage.accountFlags(fs)
	var cluster authcallout.ClusterSettings
	var routes string
	fs.StringVar(&cluster.Name, "cluster-name", "", "print an active cluster block for this cluster name (without it, the block is commented guidance)")
	fs.StringVar(&cluster.Host, "cluster-host", "0.0.0.0", "route listen address of the servers")
	fs.IntVar(&cluster.Port, "cluster-port", authcallout.DefaultRoutePort, "route listen port of the servers")
	fs.StringVar(&routes, "routes", "", "comma-separated route addresses of the servers (host:port), given the route credentials")
	fs.StringVar(&cluster.TLSCert, "cluster-tls-cert", "", "route certificate PEM on the servers (valid for server and client authentication)")
	fs.StringVar(&cluster.TLSKey, "cluster-tls-key", "", "route private key PEM on the servers")
	fs.StringVar(&cluster.TLSCA, "cluster-ca", "", "deployment CA certificate PEM on the servers")
	insecureRoutes := fs.Bool("insecure-routes", false, "allow an active cluster block that listens beyond loopback without TLS")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", exitcode.ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", exitcode.ErrUsage, fs.Arg(0))
	}
	if *creds == "" {
		return fmt.Errorf("%w: --creds FILE is required: the deployment credentials every unibusd of the cluster shares", exitcode.ErrUsage)
	}
	// Check the limits and the cluster settings before creating anything.
	limits := authcallout.PeerLimits{MaxPublishBytes: *maxPublish, MaxSubscriptions: *maxSubs, MaxFileStore: storage.maxFileStore, MaxMemoryStore: storage.maxMemoryStore}
	if err := limits.Validate(); err != nil {
		return fmt.Errorf("%w: %w", exitcode.ErrUsage, err)
	}
	for r := range strings.SplitSeq(routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			cluster.Routes = append(cluster.Routes, r)
		}
	}
	if err := checkClusterSettings(cluster, *insecureRoutes); err != nil {
		return err
	}
	keys, created, err := authcallout.LoadOrCreateKeysFile(*creds, *xkey)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(c.Stderr, "wrote new deployment credentials to %s (secret: copy it to every unibusd host, mode 0600)\n", *creds)
	}
	conf, err := authcallout.NATSConfig(keys, limits)
	if err != nil {
		return err
	}
	clusterConf, err := authcallout.NATSClusterConfig(keys, cluster)
	if err != nil {
		return fmt.Errorf("%w: %w", exitcode.ErrUsage, err)
	}
	text := fmt.Sprintf(natsConfigHeader, *creds) + conf + clusterConf
	if *out == "" {
		_, err := io.WriteString(c.Stdout, text)
		return err
	}
	return writeFileAtomic(*out, []byte(text), 0o600)
}

// checkClusterSettings checks the flags of the cluster block: the cluster
// ones go with --cluster-name, and an active block that listens beyond
// loopback needs route TLS or --insecure-routes, as an embedded node does.
func checkClusterSettings(c authcallout.ClusterSettings, insecureRoutes bool) error {
	if c.Name == "" {
		for _, clusterOnly := range []struct {
			set  bool
			name string
		}{{len(c.Routes) > 0, "--routes"}, {c.TLSCert != "", "--cluster-tls-cert"}, {c.TLSKey != "", "--cluster-tls-key"}, {c.TLSCA != "", "--cluster-ca"}} {
			if clusterOnly.set {
				return fmt.Errorf("%w: %s needs --cluster-name (without it the cluster block is printed as commented guidance)", exitcode.ErrUsage, clusterOnly.name)
			}
		}
		return nil
	}
	if (c.TLSCert == "") != (c.TLSKey == "") || (c.TLSCert == "") != (c.TLSCA == "") {
		return fmt.Errorf("%w: --cluster-tls-cert, --cluster-tls-key and --cluster-ca go together: routes use mutual TLS with the deployment CA", exitcode.ErrUsage)
	}
	if c.TLSCert == "" && !insecureRoutes && !embedded.IsLoopback(c.Host) {
		return fmt.Errorf("%w: the servers would listen for routes on %s, beyond loopback, without TLS, so routes would carry every account's traffic and the route password in the clear: "+
			"give --cluster-tls-cert, --cluster-tls-key and --cluster-ca (paths on the servers), --cluster-host 127.0.0.1, or --insecure-routes", exitcode.ErrUsage, c.Host)
	}
	return nil
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
