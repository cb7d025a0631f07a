package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/tests/nodetest"
	"github.com/unibus/unibus/tests/testio"
)

// runServe starts `unibusd args…` in-process and returns its node once
// ready; the command is stopped at the end of the test.
func runServe(t *testing.T, args []string, env map[string]string) (*node.Node, *testio.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut testio.Buffer
	ready := make(chan *node.Node, 1)
	cmd := &serveCommand{Stdout: &out, Stderr: &errOut, Getenv: envOf(env), ready: func(n *node.Node) { ready <- n }}
	done := make(chan error, 1)
	go func() { done <- cmd.Run(ctx, args) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("unibusd did not stop within 30s")
		}
	})
	select {
	case n := <-ready:
		return n, &out
	case err := <-done:
		t.Fatalf("unibusd ended early: %v\n%s", err, errOut.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("unibusd not ready after 60s\n%s", errOut.String())
	}
	return nil, nil
}

// operatorServer starts a nats-server the way an operator would: from a
// configuration file of its own that includes what `unibusd nats-config`
// printed.
func operatorServer(t *testing.T, unibusConf string) *server.Server {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "unibus.conf"), []byte(unibusConf), 0o644); err != nil {
		t.Fatal(err)
	}
	main := fmt.Sprintf("listen: 127.0.0.1:-1\nserver_name: operator\njetstream { store_dir: %q }\ninclude \"unibus.conf\"\n", filepath.Join(dir, "js"))
	path := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(path, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("the printed configuration does not load: %v", err)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("operator server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// TestServeAttached runs the services attached to an operator's
// nats-server configured by `unibusd nats-config`: peers connect to that
// server, the callout admits them, the services answer.
func TestServeAttached(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "unibus.creds")
	var conf bytes.Buffer
	if err := (&natsConfigCommand{Stdout: &conf, Stderr: &bytes.Buffer{}, Getenv: envOf(nil)}).Run(context.Background(), []string{"--creds", creds}); err != nil {
		t.Fatal(err)
	}
	ns := operatorServer(t, conf.String())
	admin := nodetest.NewIdentity(t)
	n, out := runServe(t, []string{"--nats", ns.ClientURL(), "--creds", creds}, map[string]string{"UNIBUS_ADMIN": admin.PublicKey()})
	if n.Server != nil {
		t.Fatal("attached mode started an embedded server")
	}
	if !strings.Contains(out.String(), "attached to "+ns.ClientURL()) {
		t.Fatalf("output does not say where it attached: %q", out.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, ns.ClientURL(), admin)
	if err != nil {
		t.Fatalf("admin connects through the operator's server: %v", err)
	}
	defer c.Close()
	bob := nodetest.NewIdentity(t)
	if _, err := c.AddUser(ctx, bob.PublicKey(), "bob", false); err != nil {
		t.Fatalf("add user through the attached services: %v", err)
	}
	// The new user is admitted by the callout and served.
	b, err := client.Connect(ctx, ns.ClientURL(), bob)
	if err != nil {
		t.Fatalf("bob connects: %v", err)
	}
	defer b.Close()
	if rooms, err := b.ListMyRooms(ctx); err != nil || len(rooms) != 0 {
		t.Fatalf("bob's rooms: %v, %v", rooms, err)
	}
	// A stranger is refused by the operator's server.
	if _, err := client.Connect(ctx, ns.ClientURL(), nodetest.NewIdentity(t)); err == nil {
		t.Fatal("an unregistered identity was admitted")
	}
}

// TestServeAttachedWrongCreds: credentials the servers were not configured
// with fail the start within a bound, with the reason.
func TestServeAttachedWrongCreds(t *testing.T) {
	dir := t.TempDir()
	var conf bytes.Buffer
	if err := (&natsConfigCommand{Stdout: &conf, Stderr: &bytes.Buffer{}, Getenv: envOf(nil)}).Run(context.Background(), []string{"--creds", filepath.Join(dir, "right.creds")}); err != nil {
		t.Fatal(err)
	}
	ns := operatorServer(t, conf.String())
	other := filepath.Join(dir, "other.creds")
	if err := (&natsConfigCommand{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: envOf(nil)}).Run(context.Background(), []string{"--creds", other}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	err := (&serveCommand{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: envOf(nil)}).Run(ctx, []string{"--nats", ns.ClientURL(), "--creds", other})
	// The server hands the unknown service key to the auth callout, which
	// no unibusd with the right credentials answers: refused or timed out.
	if err == nil || !strings.Contains(err.Error(), "nats-config --creds "+other) {
		t.Fatalf("err = %v, want the failure with the fix", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %s to fail", d)
	}
}
