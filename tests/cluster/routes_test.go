package cluster_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/tests/clustertest"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestRogueRoutesRefused: nats-servers that reach a node's route port but
// lack the route credentials or a certificate of the deployment CA never
// become routes. An attacker's client on such a server can neither write
// into a user's inbox nor read what users publish, and the nodes' routes
// stay as they were.
//
// A positive control first proves the attack path: a server with the same
// configuration, the route credentials and a certificate of the CA joins
// through the same kind of TCP proxy, and its client both writes into the
// victim's inbox and reads the victim's messages. Then every rogue
// solicits a node through a proxy that reports each connection the node
// hangs up: the rogues are watched being turned away, while their clients
// and the victim publish, and nothing crosses.
//
// The rogues run in-process (make test); with real nats-server nodes
// (make test-cluster), rogue nats-server processes of the same binary
// attack as well.
func TestRogueRoutesRefused(t *testing.T) {
	cl, _ := setup(t)
	victimID := nodetest.AddUser(t, cl.Node(0), "victim", false)
	victim := natstest.Connect(t, cl.URL(0), nodetest.ConnectOptions(victimID)...)
	victimInbox := "_INBOX." + victimID.PublicKey() + ".probe"
	// A subject the victim may publish (the users service's namespace)
	// that no service answers.
	const victimSubject = "unibus.v1.users.probe"
	intoInbox, err := victim.SubscribeSync(victimInbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := victim.Flush(); err != nil {
		t.Fatal(err)
	}
	user, password, err := cl.Keys.RouteCredentials()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := certs.WriteDevCA(filepath.Join(t.TempDir(), "foreign"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pki := cl.PKI
	validTLS := routeTLSBlock(pki.ServerCert, pki.ServerKey, pki.CACert)
	baseline := waitRoutes(t, cl, "before the attack", nil)

	// Positive control: the configuration the rogues use, with the right
	// credentials and certificate, routes both ways.
	legitProxy := startRouteProxy(t, cl.RouteURL(0))
	legit := startInProcessServer(t, "legit", rogueConf("legit", -1, legitProxy.routeURL(user, password), validTLS))
	legitNC := natstest.Connect(t, legit.ClientURL(), nats.UserInfo("attacker", "attacker"))
	legitReads, err := legitNC.SubscribeSync(victimSubject)
	if err != nil {
		t.Fatal(err)
	}
	if err := legitNC.Flush(); err != nil {
		t.Fatal(err)
	}
	wrote, read := false, false
	deadline := time.Now().Add(60 * time.Second)
	for !wrote || !read {
		if time.Now().After(deadline) {
			t.Fatalf("positive control: a server with the route credentials and a CA certificate did not route within 60s (wrote into the inbox: %v, read the victim: %v)", wrote, read)
		}
		if err := legitNC.Publish(victimInbox, []byte("legit")); err != nil {
			t.Fatal(err)
		}
		if err := victim.Publish(victimSubject, []byte("victim")); err != nil {
			t.Fatal(err)
		}
		if _, err := intoInbox.NextMsg(100 * time.Millisecond); err == nil {
			wrote = true
		}
		if _, err := legitReads.NextMsg(100 * time.Millisecond); err == nil {
			read = true
		}
	}
	withLegit := waitRoutes(t, cl, "with the legitimate server", []string{"legit"})
	t.Logf("positive control: the legitimate server routed both ways; routes: %v (before: %v)", withLegit, baseline)
	legit.Shutdown()
	legit.WaitForShutdown()
	legitNC.Close()
	baseline = waitRoutes(t, cl, "after the legitimate server left", nil)
	drain(intoInbox)

	// The rogues: each one defense missing.
	type variant struct{ name, route, tls string }
	variants := func(proxy *routeProxy) []variant {
		return []variant{
			{"no-credentials", proxy.routeURL("", ""), validTLS},
			{"wrong-password", proxy.routeURL(user, password+"x"), validTLS},
			{"no-tls", proxy.routeURL(user, password), ""},
			{"foreign-cert", proxy.routeURL(user, password), routeTLSBlock(foreign.ServerCert, foreign.ServerKey, pki.CACert)},
		}
	}
	var rogues []*rogue
	kinds := []string{"inproc"}
	if cl.Binary() {
		kinds = append(kinds, "proc")
	}
	for _, kind := range kinds {
		for i := range 4 {
			proxy := startRouteProxy(t, cl.RouteURL(i%cl.Size()))
			v := variants(proxy)[i]
			name := fmt.Sprintf("rogue-%s-%s", kind, v.name)
			r := &rogue{name: name, proxy: proxy}
			if kind == "inproc" {
				s := startInProcessServer(t, name, rogueConf(name, -1, v.route, v.tls))
				r.clientURL = s.ClientURL()
			} else {
				port := natstest.FreePorts(t, 1)[0]
				clustertest.StartProcess(t, cl.NATSServer(), t.TempDir(), name, rogueConf(name, port, v.route, v.tls), port)
				r.clientURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
			}
			r.nc = natstest.Connect(t, r.clientURL, nats.UserInfo("attacker", "attacker"))
			if r.reads, err = r.nc.SubscribeSync(victimSubject); err != nil {
				t.Fatal(err)
			}
			if err := r.nc.Flush(); err != nil {
				t.Fatal(err)
			}
			rogues = append(rogues, r)
		}
	}
	// Each rogue is turned away: its first two attempts are hung up.
	for _, r := range rogues {
		if err := r.proxy.waitEnded(2, 60*time.Second); err != nil {
			t.Fatalf("%s: %v (was it accepted as a route?)", r.name, err)
		}
	}
	// The window: rogues and the victim publish until every rogue has
	// been turned away twice more, so each rogue tried to join while
	// messages it could have carried were in flight.
	waiting := map[*rogue]int{}
	for _, r := range rogues {
		waiting[r] = 2
	}
	deadline = time.Now().Add(60 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for ; len(waiting) > 0; <-tick.C {
		if time.Now().After(deadline) {
			t.Fatalf("rogues not turned away twice more within 60s: %d left", len(waiting))
		}
		for _, r := range rogues {
			if err := r.nc.Publish(victimInbox, []byte(r.name)); err != nil {
				t.Fatal(err)
			}
		}
		if err := victim.Publish(victimSubject, []byte("victim")); err != nil {
			t.Fatal(err)
		}
		for r, left := range waiting {
			for left > 0 && r.proxy.ended() {
				left--
			}
			if waiting[r] = left; left == 0 {
				delete(waiting, r)
			}
		}
	}
	// Everything published has been through its server.
	for _, nc := range append([]*nats.Conn{victim}, rogueConns(rogues)...) {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for {
		m, err := intoInbox.NextMsg(time.Second)
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != "legit" { // a straggler of the control is no rogue's
			t.Fatalf("a rogue wrote into the victim's inbox: %q", m.Data)
		}
	}
	for _, r := range rogues {
		if m, err := r.reads.NextMsg(0); err == nil {
			t.Fatalf("%s read the victim's message %q", r.name, m.Data)
		}
	}
	after := waitRoutes(t, cl, "after the attack", nil)
	if !after.sameCounts(baseline) {
		t.Fatalf("the nodes' routes changed during the attack: %v, before %v", after, baseline)
	}
	t.Logf("%d rogues turned away; routes per node unchanged: %v", len(rogues), after)
}

// rogue is a nats-server outside the deployment that tries to join it.
type rogue struct {
	name      string
	clientURL string
	proxy     *routeProxy
	// nc is the attacker's client on the rogue (account UNIBUS); reads
	// subscribes to what the victim publishes.
	nc    *nats.Conn
	reads *nats.Subscription
}

func rogueConns(rs []*rogue) []*nats.Conn {
	var out []*nats.Conn
	for _, r := range rs {
		out = append(out, r.nc)
	}
	return out
}

// drain discards the messages sub holds.
func drain(sub *nats.Subscription) {
	for {
		if _, err := sub.NextMsg(0); err != nil {
			return
		}
	}
}

// rogueConf is the configuration of a server that tries to join the
// deployment: the deployment's account names (they are no secret) with a
// user of its own in UNIBUS, the cluster name, and one route. clientPort
// -1 picks a free port.
func rogueConf(name string, clientPort int, route, tlsBlock string) string {
	return fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:%d"
accounts {
  %s: { users: [ { user: attacker, password: attacker } ] }
  %s: { users: [ { user: sys, password: sys } ] }
}
system_account: %s
cluster {
  name: %s
  listen: "127.0.0.1:-1"
  routes: [ %q ]
%s}
`, name, clientPort, authcallout.AccountUnibus, authcallout.AccountSystem, authcallout.AccountSystem, clustertest.ClusterName, route, tlsBlock)
}

// routeTLSBlock is a cluster tls block presenting cert and trusting ca.
func routeTLSBlock(cert, key, ca string) string {
	return fmt.Sprintf("  tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true, timeout: %d }\n", cert, key, ca, authcallout.RouteTLSTimeout)
}

// startInProcessServer runs a nats-server from conf in this process,
// stopped at the end of the test.
func startInProcessServer(t *testing.T, name, conf string) *server.Server {
	t.Helper()
	opts := &server.Options{}
	if err := opts.ProcessConfigString(conf); err != nil {
		t.Fatalf("%s: configuration: %v", name, err)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		t.Fatalf("%s not ready within 30s", name)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// routeProxy forwards TCP connections to a node's route port and reports
// every connection that ends: a route the node refuses is hung up at
// once, one it accepts stays open.
type routeProxy struct {
	ln     net.Listener
	endedC chan struct{}
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
	wg     sync.WaitGroup
}

func startRouteProxy(t *testing.T, routeURL string) *routeProxy {
	t.Helper()
	target, err := url.Parse(routeURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &routeProxy{ln: ln, endedC: make(chan struct{}, 4096)}
	accepting := make(chan struct{})
	go func() {
		defer close(accepting)
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.DialTimeout("tcp", target.Host, 10*time.Second)
			if err != nil {
				in.Close()
				p.end()
				continue
			}
			if !p.track(in, out) {
				return
			}
			p.wg.Go(func() {
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(out, in); done <- struct{}{} }()
				go func() { _, _ = io.Copy(in, out); done <- struct{}{} }()
				<-done
				in.Close()
				out.Close()
				<-done
				p.end()
			})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-accepting
		p.mu.Lock()
		p.closed = true
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// track remembers in and out for cleanup; false once the proxy is closed.
func (p *routeProxy) track(in, out net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		in.Close()
		out.Close()
		return false
	}
	p.conns = append(p.conns, in, out)
	return true
}

func (p *routeProxy) end() {
	select {
	case p.endedC <- struct{}{}:
	default:
	}
}

// ended consumes one report of an ended connection, if there is one.
func (p *routeProxy) ended() bool {
	select {
	case <-p.endedC:
		return true
	default:
		return false
	}
}

// waitEnded waits until n more connections have ended.
func (p *routeProxy) waitEnded(n int, within time.Duration) error {
	timeout := time.After(within)
	for i := range n {
		select {
		case <-p.endedC:
		case <-timeout:
			return fmt.Errorf("%d of %d route attempts hung up within %s", i, n, within)
		}
	}
	return nil
}

// routeURL is the proxy's route URL with user and password ("" for none).
func (p *routeProxy) routeURL(user, password string) string {
	u := url.URL{Scheme: "nats-route", Host: p.ln.Addr().String()}
	if user != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// routeSnapshot is, by node name, what the node's ROUTEZ lists.
type routeSnapshot map[string]nodeRoutes

// nodeRoutes are a node's route connections: their number and how many go
// to each remote server.
type nodeRoutes struct {
	Num     int
	Remotes map[string]int
}

func (s routeSnapshot) sameCounts(o routeSnapshot) bool {
	if len(s) != len(o) {
		return false
	}
	for name, n := range s {
		if o[name].Num != n.Num {
			return false
		}
	}
	return true
}

// waitRoutes waits until every running node's routes go to the other
// nodes and to the servers named in extra, and nowhere else, and returns
// them. A server outside the deployment that stays listed fails the test.
func waitRoutes(t *testing.T, cl *clustertest.Cluster, when string, extra []string) routeSnapshot {
	t.Helper()
	want := map[string]bool{}
	for i := range cl.Size() {
		want[cl.Name(i)] = true
	}
	for _, e := range extra {
		want[e] = true
	}
	var last routeSnapshot
	var lastErr error
	deadline := time.Now().Add(60 * time.Second)
	for {
		last, lastErr = routez(cl)
		if lastErr == nil {
			lastErr = checkRemotes(last, want)
			if lastErr == nil {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("routes %s: not as expected within 60s: %v (last: %v)", when, lastErr, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkRemotes: each node routes to every wanted server but itself, and
// to nothing else.
func checkRemotes(s routeSnapshot, want map[string]bool) error {
	for name, n := range s {
		for remote := range n.Remotes {
			if !want[remote] {
				return fmt.Errorf("%s has a route to %q", name, remote)
			}
		}
		for w := range want {
			if w != name && n.Remotes[w] == 0 {
				return fmt.Errorf("%s has no route to %s yet", name, w)
			}
		}
	}
	return nil
}

// routez asks every server of the system account for its routes
// ($SYS.REQ.SERVER.PING.ROUTEZ) and returns the nodes' answers.
func routez(cl *clustertest.Cluster) (routeSnapshot, error) {
	nc := cl.Running().SystemConn
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$SYS.REQ.SERVER.PING.ROUTEZ", inbox, nil); err != nil {
		return nil, err
	}
	nodes := map[string]bool{}
	for i := range cl.Size() {
		if cl.Node(i) != nil {
			nodes[cl.Name(i)] = true
		}
	}
	snap := routeSnapshot{}
	for len(snap) < len(nodes) {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			return nil, fmt.Errorf("ROUTEZ answers from %d of %d nodes: %w", len(snap), len(nodes), err)
		}
		var resp struct {
			Server struct {
				Name string `json:"name"`
			} `json:"server"`
			Data server.Routez `json:"data"`
		}
		if err := json.Unmarshal(m.Data, &resp); err != nil {
			return nil, fmt.Errorf("ROUTEZ answer: %w", err)
		}
		if !nodes[resp.Server.Name] {
			if strings.HasPrefix(resp.Server.Name, "rogue") {
				return nil, fmt.Errorf("rogue %s answers in the deployment's system account", resp.Server.Name)
			}
			continue
		}
		n := nodeRoutes{Num: resp.Data.NumRoutes, Remotes: map[string]int{}}
		for _, r := range resp.Data.Routes {
			n.Remotes[r.RemoteName]++
		}
		snap[resp.Server.Name] = n
	}
	return snap, nil
}
