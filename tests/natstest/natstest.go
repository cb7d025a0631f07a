package natstest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/embedded"
)

// readyTimeout bounds how long helpers wait for servers and JetStream.
const readyTimeout = 30 * time.Second

// Option adjusts the embedded configuration of a test server.
type Option func(*embedded.Config)

// RunServer starts an in-process nats-server with JetStream on a random port
// with storage in a temporary directory, shut down by t.Cleanup.
func RunServer(t testing.TB, opts ...Option) *embedded.Server {
	t.Helper()
	cfg := embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir()}
	for _, o := range opts {
		o(&cfg)
	}
	return start(t, cfg)
}

// Start starts a server from an explicit configuration (for restarts with
// the same data directory and ports), shut down by t.Cleanup.
func Start(t testing.TB, cfg embedded.Config) *embedded.Server {
	t.Helper()
	return start(t, cfg)
}

func start(t testing.TB, cfg embedded.Config) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(cfg)
	if err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// Cluster is a set of in-process nodes joined by routes on loopback.
type Cluster struct {
	// Configs are the node configurations, reusable to restart a node with
	// the same name, ports and storage.
	Configs []embedded.Config
	// Servers are the running nodes, in the order of Configs; a stopped node
	// is nil.
	Servers []*embedded.Server
	t       testing.TB
}

// RunCluster starts n nodes with JetStream, every node routing to every
// other, and waits until JetStream has a meta leader.
func RunCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	clientPorts := FreePorts(t, n)
	routePorts := FreePorts(t, n)
	routes := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i])
	}
	c := &Cluster{t: t}
	// Routes are always authorized (embedded.ClusterConfig): one password
	// per test cluster.
	password := rand.Text()
	for i := range n {
		cfg := embedded.Config{
			Port:       clientPorts[i],
			DataDir:    t.TempDir(),
			ServerName: fmt.Sprintf("n%d", i+1),
			Cluster: embedded.ClusterConfig{
				Name:     "unibus-test",
				Port:     routePorts[i],
				Routes:   routes,
				Username: "natstest-route",
				Password: password,
			},
		}
		for _, o := range opts {
			o(&cfg)
		}
		c.Configs = append(c.Configs, cfg)
	}
	for _, cfg := range c.Configs {
		c.Servers = append(c.Servers, start(t, cfg))
	}
	c.WaitJetStream()
	return c
}

// Stop shuts node i down.
func (c *Cluster) Stop(i int) {
	if c.Servers[i] != nil {
		c.Servers[i].Close()
		c.Servers[i] = nil
	}
}

// Restart starts node i again with its original configuration and storage.
func (c *Cluster) Restart(i int) *embedded.Server {
	c.t.Helper()
	c.Stop(i)
	c.Servers[i] = start(c.t, c.Configs[i])
	return c.Servers[i]
}

// URLs returns the client URLs of the running nodes, comma-separated.
func (c *Cluster) URLs() string {
	var out string
	for _, s := range c.Servers {
		if s == nil {
			continue
		}
		if out != "" {
			out += ","
		}
		out += s.ClientURL()
	}
	return out
}

// WaitJetStream waits until every running node answers JetStream account
// requests, which needs an elected meta leader.
func (c *Cluster) WaitJetStream() {
	c.t.Helper()
	for _, s := range c.Servers {
		if s == nil {
			continue
		}
		nc := Connect(c.t, s.ClientURL())
		WaitJetStream(c.t, nc)
		nc.Close()
	}
}

// WaitJetStream waits until JetStream answers on nc.
func WaitJetStream(t testing.TB, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("jetstream not ready after %s: %v", readyTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Connect connects to url, closed by t.Cleanup.
func Connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream connects to url and returns a JetStream context on it.
func JetStream(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc := Connect(t, url, opts...)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// FreePorts reserves n distinct free loopback TCP ports. The ports are free
// when it returns; a race with another process is possible but rare.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	listeners := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range listeners {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("reserve port: %v", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// ClosedNonLoopbackAddr returns host:port on one of this machine's own
// IPv4 addresses that is not loopback, where nothing listens: a server
// "beyond loopback" that tests may dial without sending traffic off the
// machine. Without such an address the test is skipped, except in CI
// (CI set), where it fails, so that the check never silently goes away.
func ClosedNonLoopbackAddr(t testing.TB) string {
	t.Helper()
	missing := func(why string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("a non-loopback address is required in CI: %s", why)
		}
		t.Skipf("no non-loopback address: %s", why)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		missing(err.Error())
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.To4() == nil {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(n.IP.String(), "0"))
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return addr
	}
	missing("no local IPv4 address beyond loopback accepts a listener")
	return ""
}

// WaitStreamsInSync waits until every running node's replica of every
// stream holds the same messages (first and last sequence, count): what
// any stream leader acknowledged is then stored on every node, and a read
// any replica may answer (a direct get) sees it. It gives up when ctx
// ends. It returns an error rather than failing the test, so that it may
// be called from any goroutine.
func (c *Cluster) WaitStreamsInSync(ctx context.Context) error {
	for {
		err := c.streamsInSync()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("streams not in sync: %w (%w)", err, ctx.Err())
		case <-time.After(5 * time.Millisecond): // poll interval; ctx bounds the wait
		}
	}
}

// streamsInSync compares the state of every stream across the running
// nodes, as each node's own replica reports it.
func (c *Cluster) streamsInSync() error {
	type state struct{ first, last, msgs uint64 }
	seen := map[string]state{} // account/stream → state on the first node
	where := map[string]int{}  // account/stream → how many nodes hold it
	replicas := map[string]int{}
	running := 0
	for _, s := range c.Servers {
		if s == nil {
			continue
		}
		running++
		info, err := s.NATS().Jsz(&server.JSzOptions{Accounts: true, Streams: true, Config: true})
		if err != nil {
			return err
		}
		for _, acc := range info.AccountDetails {
			for _, st := range acc.Streams {
				key := acc.Name + "/" + st.Name
				now := state{st.State.FirstSeq, st.State.LastSeq, st.State.Msgs}
				if prev, ok := seen[key]; ok && prev != now {
					return fmt.Errorf("stream %s: %+v on one node, %+v on %s", key, prev, now, s.NATS().Name())
				}
				seen[key] = now
				where[key]++
				if st.Config != nil {
					replicas[key] = max(replicas[key], st.Config.Replicas)
				}
			}
		}
	}
	for key, n := range where {
		if want := min(running, max(replicas[key], 1)); n < want {
			return fmt.Errorf("stream %s on %d of %d nodes", key, n, want)
		}
	}
	return nil
}
