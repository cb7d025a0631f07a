package embedded_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/embedded"
)

func TestStartServeClose(t *testing.T) {
	srv, err := embedded.Start(embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(srv.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("client URL %q", srv.ClientURL())
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if _, err := nc.JetStream(); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	srv.Close()
	srv.Close() // idempotent
	if _, err := nats.Connect(srv.ClientURL()); err == nil {
		t.Fatal("server still accepts connections after Close")
	}
}

// TestPortInUse starts a server on a port another listener holds: Start
// fails at once with nats-server's reason, not after its ready timeout, and
// leaves nothing running.
func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	port := ln.Addr().(*net.TCPAddr).Port
	start := time.Now()
	srv, err := embedded.Start(embedded.Config{Port: port, DataDir: t.TempDir(), ReadyTimeout: time.Minute})
	if err == nil {
		srv.Close()
		t.Fatalf("started on port %d, which is in use", port)
	}
	if took := time.Since(start); took > 10*time.Second || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start = %v after %s; want the bind error well before the minute's ready timeout", err, took.Round(time.Millisecond))
	}
	if errors.Is(err, embedded.ErrNotReady) {
		t.Fatalf("Start = %v; want the bind error, not ErrNotReady", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]embedded.Config{
		"no data directory":     {Port: embedded.RandomPort},
		"port out of range":     {Port: 70000, DataDir: t.TempDir()},
		"cluster without name":  {Port: embedded.RandomPort, DataDir: t.TempDir(), Cluster: embedded.ClusterConfig{Name: "c"}},
		"bad cluster port":      {Port: embedded.RandomPort, DataDir: t.TempDir(), ServerName: "n1", Cluster: embedded.ClusterConfig{Name: "c", Port: -7}},
		"unparseable route URL": {Port: embedded.RandomPort, DataDir: t.TempDir(), ServerName: "n1", Cluster: embedded.ClusterConfig{Name: "c", Port: embedded.RandomPort, Routes: []string{"::nope"}}},
	} {
		t.Run(name, func(t *testing.T) {
			srv, err := embedded.Start(cfg)
			if err == nil {
				srv.Close()
				t.Fatal("started")
			}
			if !errors.Is(err, embedded.ErrConfigValidation) {
				t.Fatalf("error %v does not wrap ErrConfigValidation", err)
			}
		})
	}
}
