package embedded_test

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/certs"
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
	pki, err := certs.WriteDevCA(filepath.Join(t.TempDir(), "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	notMutual, err := certs.ServerConfig(pki.ServerCert, pki.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	cluster := func(c embedded.ClusterConfig) embedded.ClusterConfig {
		c.Name, c.Port = "c", embedded.RandomPort
		if c.Username == "" {
			c.Username, c.Password = "unibus-route", "secret"
		}
		return c
	}
	for name, tc := range map[string]struct {
		cfg  embedded.Config
		want string
	}{
		"no data directory":     {embedded.Config{Port: embedded.RandomPort}, "data directory"},
		"port out of range":     {embedded.Config{Port: 70000, DataDir: t.TempDir()}, "port"},
		"cluster without name":  {embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir(), Cluster: embedded.ClusterConfig{Name: "c"}}, "server name"},
		"bad cluster port":      {embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir(), ServerName: "n1", Cluster: embedded.ClusterConfig{Name: "c", Port: -7, Username: "u", Password: "p"}}, "cluster port"},
		"unparseable route URL": {embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir(), ServerName: "n1", Cluster: cluster(embedded.ClusterConfig{Routes: []string{"::nope"}})}, "::nope"},
		"routes without authorization": {embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir(), ServerName: "n1",
			Cluster: embedded.ClusterConfig{Name: "c", Port: embedded.RandomPort}}, "authorization"},
		"route user without password": {embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir(), ServerName: "n1",
			Cluster: embedded.ClusterConfig{Name: "c", Port: embedded.RandomPort, Username: "u"}}, "authorization"},
		"route listener beyond loopback in the clear": {embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir(), ServerName: "n1",
			Cluster: cluster(embedded.ClusterConfig{Host: "0.0.0.0"})}, "not loopback"},
		"client host beyond loopback, routes on it in the clear": {embedded.Config{Host: "192.0.2.1", Port: embedded.RandomPort, DataDir: t.TempDir(), ServerName: "n1",
			Cluster: cluster(embedded.ClusterConfig{})}, "192.0.2.1"},
		"route TLS that does not verify peers": {embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir(), ServerName: "n1",
			Cluster: cluster(embedded.ClusterConfig{TLS: notMutual})}, "verify"},
	} {
		t.Run(name, func(t *testing.T) {
			srv, err := embedded.Start(tc.cfg)
			if err == nil {
				srv.Close()
				t.Fatal("started")
			}
			if !errors.Is(err, embedded.ErrConfigValidation) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want ErrConfigValidation mentioning %q", err, tc.want)
			}
		})
	}
}

// TestClusterOptions: the route settings reach nats-server: authorization
// on the listener, credentials on every configured route (nats-server
// presents only those of the URL), mutual TLS; a listener beyond loopback
// is accepted with TLS or when made insecure in so many words.
func TestClusterOptions(t *testing.T) {
	pki, err := certs.WriteDevCA(filepath.Join(t.TempDir(), "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	routeTLS, err := certs.RouteConfig(pki.ServerCert, pki.ServerKey, pki.CACert)
	if err != nil {
		t.Fatal(err)
	}
	base := embedded.Config{DataDir: t.TempDir(), ServerName: "n1", Cluster: embedded.ClusterConfig{
		Name: "c", Port: 6222, Username: "unibus-route", Password: "secret",
		Routes: []string{"nats-route://127.0.0.1:6223", "nats-route://other:pw@127.0.0.1:6224"},
	}}
	opts, err := base.Options()
	if err != nil {
		t.Fatal(err)
	}
	if opts.Cluster.Username != "unibus-route" || opts.Cluster.Password != "secret" || opts.Cluster.TLSConfig != nil {
		t.Fatalf("cluster options %+v", opts.Cluster)
	}
	if len(opts.Routes) != 2 {
		t.Fatalf("routes %v", opts.Routes)
	}
	for i, want := range []string{"unibus-route:secret", "other:pw"} {
		if got := opts.Routes[i].User.String(); got != want {
			t.Errorf("route %d presents %q, want %q", i, got, want)
		}
	}
	for name, mod := range map[string]func(*embedded.Config){
		"TLS beyond loopback":      func(c *embedded.Config) { c.Cluster.Host, c.Cluster.TLS = "0.0.0.0", routeTLS },
		"insecure beyond loopback": func(c *embedded.Config) { c.Cluster.Host, c.Cluster.InsecureRoutes = "10.1.2.3", true },
		"localhost in the clear":   func(c *embedded.Config) { c.Cluster.Host = "localhost" },
		"IPv6 loopback":            func(c *embedded.Config) { c.Host = "::1" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := base
			mod(&cfg)
			opts, err := cfg.Options()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Cluster.TLS != nil && (opts.Cluster.TLSConfig != routeTLS || opts.Cluster.TLSTimeout != embedded.RouteTLSTimeout) {
				t.Fatal("route TLS not passed on")
			}
		})
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.1.2.3": true, "::1": true, "[::1]": true, "localhost": true, "LocalHost": true,
		"": false, "0.0.0.0": false, "::": false, "10.0.0.1": false, "192.0.2.1": false, "example.com": false, "localhost.example.com": false,
	} {
		if got := embedded.IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestClusterRouteTLS: two nodes with the same route credentials and
// certificates of one CA form a route over mutual TLS.
func TestClusterRouteTLS(t *testing.T) {
	pki, err := certs.WriteDevCA(filepath.Join(t.TempDir(), "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var servers []*embedded.Server
	var routes []string
	for _, port := range freePorts(t, 2) {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", port))
	}
	for i := range 2 {
		routeTLS, err := certs.RouteConfig(pki.ServerCert, pki.ServerKey, pki.CACert)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(routes[i][strings.LastIndex(routes[i], ":")+1:])
		srv, err := embedded.Start(embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir(), ServerName: fmt.Sprintf("n%d", i+1),
			Cluster: embedded.ClusterConfig{Name: "c", Port: port, Routes: routes, Username: "unibus-route", Password: "secret", TLS: routeTLS}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
	}
	deadline := time.Now().Add(30 * time.Second)
	for servers[0].NATS().NumRoutes() == 0 || servers[1].NATS().NumRoutes() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no route after 30s: %d, %d", servers[0].NATS().NumRoutes(), servers[1].NATS().NumRoutes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Routed: a message published on one node reaches a subscriber on the other.
	sub, err := nats.Connect(servers[1].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got, err := sub.SubscribeSync("routed")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	pub, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for {
		if err := pub.Publish("routed", []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, err := got.NextMsg(100 * time.Millisecond); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no message across the route within 30s")
		}
	}
}

// freePorts reserves n free loopback ports (free when it returns).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
