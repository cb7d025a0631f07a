package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/natstest"
)

// EnvNATSServer names the nats-server binary that switches the cluster to
// real server processes.
const EnvNATSServer = "UNIBUS_NATS_SERVER"

// startTimeout bounds the start of one node, election of JetStream
// leaders included.
const startTimeout = 90 * time.Second

// Config tunes a cluster.
type Config struct {
	// Nodes is the number of nodes; zero means 3.
	Nodes int
	// Replicas of every bucket; zero means min(3, Nodes).
	Replicas int
	// OpTimeout bounds every store operation; zero means 2s, shorter
	// than the default so that quorum-loss tests fail fast.
	OpTimeout time.Duration
	// Services adjusts the services' configuration on every node.
	Services func(*svc.Config)
}

// Cluster is a running deployment. Its methods must be called from the
// test's goroutine.
type Cluster struct {
	t       testing.TB
	cfg     Config
	Keys    authcallout.Keys
	binary  string
	dir     string
	members []*member
}

type member struct {
	name       string
	clientPort int
	routePort  int
	dataDir    string
	node       *node.Node // the node, or the services attached to proc
	proc       *exec.Cmd  // the nats-server process (binary mode)
	procDone   chan struct{}
}

// Start starts a cluster and returns when every node serves.
func Start(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = min(3, cfg.Nodes)
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = 2 * time.Second
	}
	keys, err := authcallout.GenerateKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, cfg: cfg, Keys: keys, binary: os.Getenv(EnvNATSServer), dir: t.TempDir()}
	clientPorts, routePorts := natstest.FreePorts(t, cfg.Nodes), natstest.FreePorts(t, cfg.Nodes)
	for i := range cfg.Nodes {
		c.members = append(c.members, &member{
			name:       fmt.Sprintf("n%d", i+1),
			clientPort: clientPorts[i],
			routePort:  routePorts[i],
			dataDir:    filepath.Join(c.dir, fmt.Sprintf("n%d", i+1)),
		})
	}
	if c.binary != "" {
		conf, err := authcallout.NATSConfig(keys)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.dir, "unibus.conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(c.stopAll)
	all := make([]int, cfg.Nodes)
	for i := range all {
		all[i] = i
	}
	c.Restart(all...)
	return c
}

// Binary reports whether the nodes are real nats-server processes.
func (c *Cluster) Binary() bool { return c.binary != "" }

// Size is the number of nodes.
func (c *Cluster) Size() int { return len(c.members) }

// URL is where clients of node i connect.
func (c *Cluster) URL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.members[i].clientPort)
}

// URLs lists every node, node first first: what a client that should
// prefer node first and fail over to the others connects with.
func (c *Cluster) URLs(first int) string {
	urls := []string{c.URL(first)}
	for i := range c.members {
		if i != first {
			urls = append(urls, c.URL(i))
		}
	}
	return strings.Join(urls, ",")
}

// Node is node i's unibus side (its store, services and connections), or
// nil while the node is down.
func (c *Cluster) Node(i int) *node.Node { return c.members[i].node }

// Kill stops node i abruptly: SIGKILL for a nats-server process (its
// attached services stop with it, as on a lost machine); an in-process
// node shuts its server down without draining.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	m := c.members[i]
	if m.proc != nil {
		_ = m.proc.Process.Signal(syscall.SIGKILL)
		<-m.procDone
		m.proc = nil
	}
	if m.node != nil {
		m.node.Close()
		m.node = nil
	}
}

// Restart starts the given nodes (stopped or never started) at once, on
// their ports and data, and returns when each serves. Nodes must start
// together when none of them can form a quorum alone.
func (c *Cluster) Restart(nodes ...int) {
	c.t.Helper()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for k, i := range nodes {
		wg.Go(func() { errs[k] = c.start(i) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatalf("start nodes %v: %v", nodes, err)
	}
}

func (c *Cluster) start(i int) error {
	m := c.members[i]
	if m.node != nil {
		return fmt.Errorf("%s is running", m.name)
	}
	cfg := node.Config{
		Keys:  &c.Keys,
		Store: kvstore.Config{Replicas: c.cfg.Replicas, OpTimeout: c.cfg.OpTimeout},
	}
	if c.cfg.Services != nil {
		c.cfg.Services(&cfg.Services)
	}
	if c.binary != "" {
		if err := c.startProcess(m); err != nil {
			return err
		}
		cfg.NATSURL = c.URLs(i)
		cfg.ReconnectWait = 100 * time.Millisecond
	} else {
		routes := make([]string, len(c.members))
		for j, o := range c.members {
			routes[j] = fmt.Sprintf("nats-route://127.0.0.1:%d", o.routePort)
		}
		cfg.Server = embedded.Config{
			Port:       m.clientPort,
			DataDir:    m.dataDir,
			ServerName: m.name,
			Cluster:    embedded.ClusterConfig{Name: "unibus-test", Port: m.routePort, Routes: routes},
			// Three servers starting at once under -race on two cores.
			ReadyTimeout: startTimeout,
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	n, err := node.Start(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	m.node = n
	return nil
}

// startProcess runs nats-server for m with the deployment's configuration
// included, and waits until its client port accepts connections.
func (c *Cluster) startProcess(m *member) error {
	var routes []string
	for _, o := range c.members {
		routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", o.routePort)))
	}
	conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
cluster {
  name: unibus-test
  listen: 127.0.0.1:%d
  routes: [ %s ]
}
jetstream { store_dir: %q }
include "unibus.conf"
`, m.name, m.clientPort, m.routePort, strings.Join(routes, ", "), m.dataDir)
	path := filepath.Join(c.dir, m.name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(c.dir, m.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.binary, "-c", path)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", c.binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	m.proc, m.procDone = cmd, done
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", m.clientPort), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("nats-server %s exited at start; see %s", m.name, logFile.Name())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nats-server %s not listening after 30s", m.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopAll stops every node (test cleanup).
func (c *Cluster) stopAll() {
	for _, m := range c.members {
		if m.node != nil {
			m.node.Close()
			m.node = nil
		}
		if m.proc != nil {
			_ = m.proc.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.procDone:
			case <-time.After(10 * time.Second):
				_ = m.proc.Process.Kill()
				<-m.procDone
			}
			m.proc = nil
		}
	}
}

// Running is a node that is up, for setup and checks.
func (c *Cluster) Running() *node.Node {
	for _, m := range c.members {
		if m.node != nil {
			return m.node
		}
	}
	c.t.Fatal("no node is running")
	return nil
}
