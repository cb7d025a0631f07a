package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/tests/nodetest"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestServeBootstrapsAdminFromEnv(t *testing.T) {
	admin, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut bytes.Buffer
	ready := make(chan *node.Node, 1)
	cmd := &serveCommand{
		Stdout: &out, Stderr: &errOut,
		Getenv: envOf(map[string]string{"UNIBUS_DATA": t.TempDir(), "UNIBUS_ADMIN": admin.PublicKey()}),
		ready:  func(n *node.Node) { ready <- n },
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Run(ctx, []string{"--port", "-1"}) }()
	var n *node.Node
	select {
	case n = <-ready:
	case err := <-done:
		t.Fatalf("serve ended early: %v\n%s", err, errOut.String())
	case <-time.After(30 * time.Second):
		t.Fatal("serve not ready after 30s")
	}
	if u, err := n.Store.GetUser(ctx, admin.PublicKey()); err != nil || !u.Admin || u.Revoked() {
		t.Fatalf("UNIBUS_ADMIN not bootstrapped: %+v, %v", u, err)
	}
	// The admin connects with its nkey and may use micro discovery.
	nc, err := nats.Connect(n.ClientURL(), nodetest.ConnectOptions(admin)...)
	if err != nil {
		t.Fatalf("admin connect: %v", err)
	}
	if err := nc.Publish("$SRV.PING", nil); err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushTimeout(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := nc.LastError(); err != nil {
		t.Fatalf("admin may not publish $SRV.PING: %v", err)
	}
	nc.Close()
	if !strings.Contains(out.String(), n.ClientURL()) {
		t.Fatalf("output does not say where to connect: %q", out.String())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve returned %v after shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s of cancellation")
	}
}

func TestServeRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		usage bool
	}{
		{"unknown flag", []string{"--nope"}, true},
		{"extra argument", []string{"extra"}, true},
		{"cert without key", []string{"--tls-cert", "x.pem"}, true},
		{"bad admin key", []string{"--port", "-1", "--admin", "not-a-key"}, false},
		{"bad replicas", []string{"--port", "-1", "--replicas", "6"}, false},
		{"bad auth mode", []string{"--port", "-1", "--auth-mode", "maybe"}, false},
		{"missing cert files", []string{"--tls-cert", "nope.pem", "--tls-key", "nope-key.pem"}, false},
		{"publish limit below the bundle limit", []string{"--port", "-1", "--max-publish-bytes", "1100000"}, false},
		{"bad rate burst", []string{"--port", "-1", "--rate-burst", "-5"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			cmd := &serveCommand{Stdout: &out, Stderr: &errOut, Getenv: envOf(map[string]string{"UNIBUS_DATA": t.TempDir()})}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := cmd.Run(ctx, tc.args)
			if err == nil {
				t.Fatal("accepted")
			}
			if errors.Is(err, exitcode.ErrUsage) != tc.usage {
				t.Fatalf("error %v: usage=%v, want %v", err, errors.Is(err, exitcode.ErrUsage), tc.usage)
			}
			if exitCode(err) == 0 {
				t.Fatalf("exit code 0 for %v", err)
			}
		})
	}
}

func TestDevCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out, errOut bytes.Buffer
	cmd := &devCertsCommand{Stdout: &out, Stderr: &errOut}
	if err := cmd.Run(context.Background(), []string{"--dir", dir}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "server.pem", "server-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	if err := cmd.Run(context.Background(), []string{"--dir", dir}); err == nil {
		t.Fatal("overwrote existing certificates")
	}
}

func TestDefaultDataDir(t *testing.T) {
	if got := defaultDataDir(envOf(map[string]string{"UNIBUS_DATA": "/x"})); got != "/x" {
		t.Fatalf("UNIBUS_DATA ignored: %s", got)
	}
	if got := defaultDataDir(envOf(map[string]string{"XDG_DATA_HOME": "/d"})); got != "/d/unibus" {
		t.Fatalf("XDG_DATA_HOME ignored: %s", got)
	}
}
