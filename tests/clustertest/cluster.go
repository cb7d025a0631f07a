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
	"github.com/unibus/unibus/certs"
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

// ClusterName is the NATS cluster name of every test deployment.
const ClusterName = "unibus-test"

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
	t    testing.TB
	cfg  Config
	Keys authcallout.Keys
	// PKI is the deployment's development CA: every node's routes use
	// mutual TLS with its server certificate (valid for 127.0.0.1).
	PKI     certs.Files
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
	if c.PKI, err = certs.WriteDevCA(filepath.Join(c.dir, "pki"), nil); err != nil {
		t.Fatal(err)
	}
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
		conf, err := authcallout.NATSConfig(keys, authcallout.PeerLimits{})
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

// NATSServer is the nats-server binary of the nodes, or "" when they are
// in-process.
func (c *Cluster) NATSServer() string { return c.binary }

// Name is node i's server name.
func (c *Cluster) Name(i int) string { return c.members[i].name }

// RouteURL is node i's route address, without credentials.
func (c *Cluster) RouteURL(i int) string {
	return fmt.Sprintf("nats-route://127.0.0.1:%d", c.members[i].routePort)
}

// routeAddrs are the route addresses of every node, without credentials.
func (c *Cluster) routeAddrs() []string {
	routes := make([]string, len(c.members))
	for j := range c.members {
		routes[j] = c.RouteURL(j)
	}
	return routes
}

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
		// Routes as unibusd makes them: authorized with the deployment's
		// route credentials, over mutual TLS with its CA.
		user, password, err := c.Keys.RouteCredentials()
		if err != nil {
			return err
		}
		routeTLS, err := certs.RouteConfig(c.PKI.ServerCert, c.PKI.ServerKey, c.PKI.CACert)
		if err != nil {
			return err
		}
		cfg.Server = embedded.Config{
			Port:       m.clientPort,
			DataDir:    m.dataDir,
			ServerName: m.name,
			Cluster: embedded.ClusterConfig{Name: ClusterName, Port: m.routePort, Routes: c.routeAddrs(),
				Username: user, Password: password, TLS: routeTLS},
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
// included and the cluster block `unibusd nats-config` prints (route
// authorization, credentialed routes, mutual TLS), and waits until its
// client port accepts connections.
func (c *Cluster) startProcess(m *member) error {
	cluster, err := authcallout.NATSClusterConfig(c.Keys, authcallout.ClusterSettings{
		Name: ClusterName, Host: "127.0.0.1", Port: m.routePort, Routes: c.routeAddrs(),
		TLSCert: c.PKI.ServerCert, TLSKey: c.PKI.ServerKey, TLSCA: c.PKI.CACert,
	})
	if err != nil {
		return err
	}
	conf := fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:%d\n%sjetstream { store_dir: %q }\ninclude \"unibus.conf\"\n",
		m.name, m.clientPort, cluster, m.dataDir)
	p, err := startServerProcess(c.binary, c.dir, m.name, conf, m.clientPort)
	if err != nil {
		return err
	}
	m.proc, m.procDone = p.cmd, p.done
	return nil
}

// Process is a nats-server process started by StartProcess.
type Process struct {
	// Log is the file the process writes its log into.
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcess runs the nats-server binary with the configuration conf
// (written to dir/name.conf; its log goes to dir/name.log), waits until
// its client port accepts connections, and stops it at the end of the
// test. Tests use it for servers outside the deployment, such as rogues.
func StartProcess(t testing.TB, binary, dir, name, conf string, clientPort int) *Process {
	t.Helper()
	p, err := startServerProcess(binary, dir, name, conf, clientPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// Stop stops the process (SIGTERM, then SIGKILL after 10 s) and waits for
// it to exit. It is safe to call more than once.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startServerProcess writes conf to dir/name.conf, runs binary with it
// (log in dir/name.log) and waits until clientPort accepts connections.
func startServerProcess(binary, dir, name, conf string, clientPort int) (*Process, error) {
	path := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "-c", path)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	p := &Process{Log: logFile.Name(), cmd: cmd, done: done}
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", clientPort), time.Second)
		if err == nil {
			conn.Close()
			return p, nil
		}
		select {
		case <-done:
			return nil, fmt.Errorf("nats-server %s exited at start; see %s", name, p.Log)
		default:
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("nats-server %s not listening after 30s; see %s", name, p.Log)
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
