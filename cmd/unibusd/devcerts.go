package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/internal/exitcode"
)

// devCertsCommand writes a throwaway CA and server certificate for local
// TLS: client connections, and the mutual TLS of a test cluster's routes.
type devCertsCommand struct {
	Stdout, Stderr io.Writer
}

// Run parses args and writes the files.
func (c *devCertsCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("unibusd dev-certs", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	dir := fs.String("dir", "certs", "directory to write ca.pem, ca-key.pem, server.pem, server-key.pem into")
	hosts := fs.String("hosts", strings.Join(certs.DefaultDevHosts(), ","), "comma-separated names and IPs the server certificate is valid for")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", exitcode.ErrUsage, err)
	}
	files, err := certs.WriteDevCA(*dir, strings.Split(*hosts, ","))
	if err != nil {
		return fmt.Errorf("write dev certificates: %w", err)
	}
	fmt.Fprintf(c.Stdout, "CA:     %s\nserver: %s (key %s)\nrun:    unibusd --tls-cert %s --tls-key %s\n",
		files.CACert, files.ServerCert, files.ServerKey, files.ServerCert, files.ServerKey)
	// The server certificate is valid for client authentication too, so a
	// test cluster's nodes may share it for mutual route TLS (--hosts must
	// name the addresses the nodes reach each other at).
	fmt.Fprintf(c.Stdout, "routes: unibusd --cluster-tls-cert %s --cluster-tls-key %s --cluster-ca %s …\n",
		files.ServerCert, files.ServerKey, files.CACert)
	return nil
}
