package authcallout_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
	"github.com/unibus/unibus/tests/testio"
)

// The hostile-client suite of the auth callout: connects that must be
// refused, floods, and messages over the limits. Every case checks the
// refusal itself, that nothing was stored, and that the node still serves
// a registered peer (connect and a control-plane request).

// denyBound bounds a refusal: the callout answers well inside the server's
// 2 s auth timeout, with slack for a busy machine.
const denyBound = 1500 * time.Millisecond

// stateBuckets are the buckets a refused connect must leave alone (the
// nonces aside: the callout writes none).
var stateBuckets = []string{kvstore.BucketUsers, kvstore.BucketRooms, kvstore.BucketMembers, kvstore.BucketRoomsByMember, kvstore.BucketRoomKeys}

// lastSeqs returns the last sequence of every state bucket: any write
// moves it.
func lastSeqs(t *testing.T, n *node.Node) map[string]uint64 {
	t.Helper()
	js, err := jetstream.New(n.StoreConn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]uint64{}
	for _, b := range stateBuckets {
		s, err := js.Stream(ctx, "KV_"+b)
		if err != nil {
			t.Fatalf("stream of %s: %v", b, err)
		}
		out[b] = s.CachedInfo().State.LastSeq
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatalf("stream of %s: %v", b, err)
		}
		out[b] = info.State.LastSeq
	}
	return out
}

// stillServes checks that the node admits a registered peer and answers
// its control-plane request, and that nothing was stored since before.
func stillServes(t *testing.T, n *node.Node, good *identity.Identity, before map[string]uint64) {
	t.Helper()
	after := lastSeqs(t, n)
	for b, seq := range before {
		if after[b] != seq {
			t.Errorf("bucket %s written (last sequence %d → %d)", b, seq, after[b])
		}
	}
	p := mustConnect(t, n, good)
	defer p.nc.Close()
	h, err := subjects.SignRequest(good.KeyPair(), subjects.RoomsMine, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.nc.RequestMsg(&nats.Msg{Subject: subjects.RoomsMine, Header: h}, 10*time.Second)
	if err != nil {
		t.Fatalf("good peer's request: %v", err)
	}
	if !strings.HasPrefix(string(r.Data), `{"rooms":[`) {
		t.Fatalf("good peer's request answered %q", r.Data)
	}
}

// signWith signs the server's nonce with kp, whatever kind of key it is.
func signWith(kp nkeys.KeyPair) nats.SignatureHandler {
	return func(nonce []byte) ([]byte, error) { return kp.Sign(nonce) }
}

func mustKey(t *testing.T, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return kp, pub
}

// userJWT returns a user JWT for a fresh user key, issued by a fresh
// account key (which the deployment does not know), with change applied.
func userJWT(t *testing.T, change func(*jwt.UserClaims)) (string, nkeys.KeyPair) {
	t.Helper()
	ukp, upub := mustKey(t, nkeys.CreateUser)
	akp, _ := mustKey(t, nkeys.CreateAccount)
	uc := jwt.NewUserClaims(upub)
	uc.Audience = authcallout.AccountUnibus
	if change != nil {
		change(uc)
	}
	token, err := uc.Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	return token, ukp
}

func TestHostileConnects(t *testing.T) {
	for _, env := range []struct {
		name string
		opts []nodetest.Option
	}{
		{"plain", nil},
		{"xkey", []nodetest.Option{nodetest.WithXKey()}},
	} {
		t.Run(env.name, func(t *testing.T) { testHostileConnects(t, env.opts) })
	}
}

func testHostileConnects(t *testing.T, opts []nodetest.Option) {
	logs := &testio.Buffer{}
	n := nodetest.Run(t, append(opts, func(c *node.Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})...)
	ctx := context.Background()
	good := nodetest.AddUser(t, n, "good", false)
	victim := nodetest.AddUser(t, n, "victim", true)
	revoked := nodetest.AddUser(t, n, "revoked", false)
	if _, err := n.Store.RevokeUser(ctx, revoked.PublicKey()); err != nil {
		t.Fatal(err)
	}
	attacker := nodetest.NewIdentity(t)
	account, accountPub := mustKey(t, nkeys.CreateAccount)
	server, serverPub := mustKey(t, nkeys.CreateServer)
	operator, operatorPub := mustKey(t, nkeys.CreateOperator)
	cluster, clusterPub := mustKey(t, nkeys.CreateCluster)
	seed, err := victim.KeyPair().Seed()
	if err != nil {
		t.Fatal(err)
	}
	garbage := func([]byte) ([]byte, error) { return []byte("not a signature"), nil }
	empty := func([]byte) ([]byte, error) { return nil, nil }
	foreign, foreignKey := userJWT(t, nil)
	expired, expiredKey := userJWT(t, func(uc *jwt.UserClaims) { uc.Expires = time.Now().Add(-time.Hour).Unix() })
	future, futureKey := userJWT(t, func(uc *jwt.UserClaims) { uc.NotBefore = time.Now().Add(time.Hour).Unix() })
	before := lastSeqs(t, n)

	for _, tc := range []struct {
		name string
		opts []nats.Option
	}{
		{"unregistered key", nodetest.ConnectOptions(attacker)},
		{"revoked user", nodetest.ConnectOptions(revoked)},
		{"registered key, nonce signed by another key", []nats.Option{nats.Nkey(victim.PublicKey(), attacker.SignNonce)}},
		{"registered key, garbage signature", []nats.Option{nats.Nkey(victim.PublicKey(), garbage)}},
		{"registered key, empty signature", []nats.Option{nats.Nkey(victim.PublicKey(), empty)}},
		{"registered key in lower case", []nats.Option{nats.Nkey(strings.ToLower(victim.PublicKey()), victim.SignNonce)}},
		{"registered key with a wildcard suffix", []nats.Option{nats.Nkey(victim.PublicKey()+".>", victim.SignNonce)}},
		{"wildcard key", []nats.Option{nats.Nkey("*", victim.SignNonce)}},
		{"invalid UTF-8 key", []nats.Option{nats.Nkey("U\xff\xfe\xfd", victim.SignNonce)}},
		{"seed where the public key belongs", []nats.Option{nats.Nkey(string(seed), victim.SignNonce)}},
		{"account key", []nats.Option{nats.Nkey(accountPub, signWith(account))}},
		{"server key", []nats.Option{nats.Nkey(serverPub, signWith(server))}},
		{"operator key", []nats.Option{nats.Nkey(operatorPub, signWith(operator))}},
		{"cluster key", []nats.Option{nats.Nkey(clusterPub, signWith(cluster))}},
		{"user JWT of a foreign account", []nats.Option{nats.UserJWT(func() (string, error) { return foreign, nil }, signWith(foreignKey))}},
		{"expired user JWT", []nats.Option{nats.UserJWT(func() (string, error) { return expired, nil }, signWith(expiredKey))}},
		{"user JWT valid only in the future", []nats.Option{nats.UserJWT(func() (string, error) { return future, nil }, signWith(futureKey))}},
		{"no credentials", nil},
		{"user and password", []nats.Option{nats.UserInfo("admin", "admin")}},
		{"token", []nats.Option{nats.Token("s3cr3t")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			nc, err := nats.Connect(n.ClientURL(), append(tc.opts, nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
			took := time.Since(start)
			if err == nil {
				nc.Close()
				t.Fatal("admitted")
			}
			if !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
				t.Fatalf("connect = %v, want an authorization violation", err)
			}
			if strings.Contains(err.Error(), string(seed)) {
				t.Errorf("the refusal %q repeats a seed", err)
			}
			if took > denyBound {
				t.Errorf("refused after %s, want within %s", took, denyBound)
			}
		})
	}
	stillServes(t, n, good, before)
	// nats-server's own lines name the nkey a client presented, whatever
	// it is; the callout's must not repeat a seed.
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, string(seed)) && !strings.Contains(line, "component=nats-server") {
			t.Errorf("the callout's log repeats a seed presented as a public key: %s", line)
		}
	}
	if !strings.Contains(logs.String(), "auth callout: deny") {
		t.Error("the denials were not logged")
	}
}

// TestFloodOfHostileConnects: a flood of connects with bad keys of every
// kind neither keeps a registered peer out nor slows it much, stores
// nothing, and leaves the node serving.
func TestFloodOfHostileConnects(t *testing.T) {
	n := nodetest.Run(t)
	good := nodetest.AddUser(t, n, "good", false)
	victim := nodetest.AddUser(t, n, "victim", false)
	before := lastSeqs(t, n)

	flood := startConnectFlood(t, n.ClientURL(), victim)
	for i := range 5 {
		start := time.Now()
		p, err := connectPeer(t, n, good)
		if err != nil {
			t.Fatalf("good connect %d during the flood: %v", i, err)
		}
		p.nc.Close()
		if took := time.Since(start); took > time.Second {
			t.Errorf("good connect %d took %s during the flood", i, took)
		}
	}
	flood.stop()
	if flood.admitted.Load() != 0 {
		t.Errorf("%d hostile connects admitted", flood.admitted.Load())
	}
	if flood.refused.Load() < 16 {
		t.Errorf("only %d hostile connects made: no flood", flood.refused.Load())
	}
	t.Logf("%d hostile connects refused", flood.refused.Load())
	stillServes(t, n, good, before)
}

// connectFlood makes hostile connects (floodOptions) from 16 goroutines
// until stopped, counting those refused and any admitted.
type connectFlood struct {
	admitted, refused atomic.Int64
	done              chan struct{}
	wg                sync.WaitGroup
	stopOnce          sync.Once
}

// startConnectFlood starts a flood against url, returns once it is under
// way (every goroutine's worth of connects answered), and stops it at the
// latest when tb ends.
func startConnectFlood(tb testing.TB, url string, victim *identity.Identity) *connectFlood {
	tb.Helper()
	f := &connectFlood{done: make(chan struct{})}
	for i := range 16 {
		f.wg.Go(func() {
			for {
				select {
				case <-f.done:
					return
				default:
				}
				nc, err := nats.Connect(url, append(floodOptions(i, victim), nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
				if err != nil {
					f.refused.Add(1)
					continue
				}
				f.admitted.Add(1)
				nc.Close()
			}
		})
	}
	tb.Cleanup(f.stop)
	deadline := time.Now().Add(30 * time.Second)
	for f.attempts() < 16 {
		if time.Now().After(deadline) {
			tb.Fatalf("connect flood not under way after 30s: %d connects answered", f.attempts())
		}
		time.Sleep(10 * time.Millisecond) // poll interval; the deadline bounds the wait
	}
	return f
}

// stop ends the flood and waits for its goroutines; calling it again does
// nothing.
func (f *connectFlood) stop() {
	f.stopOnce.Do(func() {
		close(f.done)
		f.wg.Wait()
	})
}

// attempts is how many hostile connects were made so far.
func (f *connectFlood) attempts() int64 { return f.admitted.Load() + f.refused.Load() }

// floodOptions are the connect options of a hostile connect: a fresh
// unregistered key, a forged signature for a registered key, an account
// key, or a garbage signature, in turn.
func floodOptions(i int, victim *identity.Identity) []nats.Option {
	switch i % 4 {
	case 0:
		id, err := identity.Generate()
		if err != nil {
			return nil
		}
		return nodetest.ConnectOptions(id)
	case 1:
		attacker, err := identity.Generate()
		if err != nil {
			return nil
		}
		return []nats.Option{nats.Nkey(victim.PublicKey(), attacker.SignNonce)}
	case 2:
		kp, err := nkeys.CreateAccount()
		if err != nil {
			return nil
		}
		pub, _ := kp.PublicKey()
		return []nats.Option{nats.Nkey(pub, signWith(kp))}
	default:
		return []nats.Option{nats.Nkey(victim.PublicKey(), func([]byte) ([]byte, error) { return make([]byte, 64), nil })}
	}
}

// TestBurstBeyondTheQueue: with one worker stuck on a slow store and a
// queue of one, a burst of connects is denied in full and fast: at once
// when the queue is full, at its deadline for the queued one, never left
// to the server's 2 s auth timeout.
func TestBurstBeyondTheQueue(t *testing.T) {
	const timeout = 300 * time.Millisecond
	n := nodetest.Run(t, func(c *node.Config) {
		c.Callout.Workers, c.Callout.QueueLength, c.Callout.RequestTimeout = 1, 1, timeout
		c.Callout.Store = natstest.SlowCalloutStore{CalloutBackend: natstest.MemoryCalloutStore{}, Delay: time.Minute}
	})
	alice := nodetest.AddUser(t, n, "alice", false)
	const burst = 24
	var wg sync.WaitGroup
	took := make([]time.Duration, burst)
	errs := make([]error, burst)
	for i := range burst {
		wg.Go(func() {
			start := time.Now()
			nc, err := nats.Connect(n.ClientURL(), append(nodetest.ConnectOptions(alice), nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
			took[i] = time.Since(start)
			if err == nil {
				nc.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i := range burst {
		if !errors.Is(errs[i], nats.ErrAuthorization) {
			t.Errorf("connect %d: %v, want an authorization violation", i, errs[i])
		}
		if took[i] > denyBound {
			t.Errorf("connect %d refused after %s, want within %s (not at the server's auth timeout)", i, took[i], denyBound)
		}
	}
}

// sendSubject returns the subject pub sends a frame for a fresh room on.
func sendSubject(t testing.TB, pub string) string {
	t.Helper()
	room, _ := subjects.NewRoomID(pub, subjects.ModeE2E)
	send, err := subjects.Send(room, pub)
	if err != nil {
		t.Fatal(err)
	}
	return send
}

// TestPublishLimit: the server refuses a message over PeerLimits'
// MaxPublishBytes from a peer (it closes the connection, which comes
// back), while one under it is delivered; a peer cannot hold more than
// MaxSubscriptions subscriptions.
func TestPublishLimit(t *testing.T) {
	bus := startKickBus(t)
	alice := addUser(t, bus.store, "alice")
	send := sendSubject(t, alice.PublicKey())
	a, err := connectPeerURL(t, bus.url, alice)
	if err != nil {
		t.Fatal(err)
	}
	// A witness where the routing service would be.
	sub := subscribe(t, bus.witness(t), send)

	under := make([]byte, authcallout.DefaultMaxPublishBytes-1024)
	if err := a.nc.Publish(send, under); err != nil {
		t.Fatalf("publish under the limit: %v", err)
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || len(m.Data) != len(under) {
		t.Fatalf("message under the limit not delivered: %v", err)
	}

	over := make([]byte, authcallout.DefaultMaxPublishBytes+1)
	err = a.nc.Publish(send, over)
	if err == nil {
		err = a.nc.Flush()
	}
	t.Logf("publish over the limit: %v", err)
	if !errors.Is(err, nats.ErrMaxPayload) {
		// nats.go learned only the server's max_payload: the server
		// refuses the message and closes the connection.
		select {
		case <-a.disconnects:
		case <-time.After(10 * time.Second):
			t.Fatalf("a message over the limit was accepted (publish: %v)", err)
		}
		if last := a.nc.LastError(); last == nil || !strings.Contains(strings.ToLower(last.Error()), "maximum payload") {
			t.Errorf("connection closed with %v, want a maximum payload violation", last)
		} else {
			t.Logf("connection closed: %v", last)
		}
	}
	if m, err := sub.NextMsg(500 * time.Millisecond); err == nil {
		t.Fatalf("a message of %d bytes over the limit was delivered", len(m.Data))
	}
	// The peer is still served: it reconnects and publishes again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := a.nc.Publish(send, []byte("after")); err == nil && a.nc.Flush() == nil {
			if m, err := sub.NextMsg(time.Second); err == nil && string(m.Data) == "after" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the peer is not served after its oversize message")
		}
		time.Sleep(50 * time.Millisecond) // poll interval while it reconnects; the deadline bounds the wait
	}

	// Subscriptions beyond the limit are refused.
	deliveries, err := subjects.DeliverOf(alice.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	for range authcallout.DefaultMaxSubscriptions + 1 {
		if _, err := a.nc.Subscribe(deliveries, func(*nats.Msg) {}); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-a.errs:
			if errors.Is(err, nats.ErrMaxSubscriptionsExceeded) {
				return
			}
		case <-time.After(time.Until(deadline)):
			t.Fatalf("%d subscriptions accepted", authcallout.DefaultMaxSubscriptions+1)
		}
	}
}

// TestPublishLimitRaw: a client that ignores the limit nats.go learned
// (speaking the protocol itself) is refused by the server: its oversize
// message is not delivered and its connection is closed with an error.
func TestPublishLimitRaw(t *testing.T) {
	bus := startKickBus(t)
	alice := addUser(t, bus.store, "alice")
	send := sendSubject(t, alice.PublicKey())
	witness := bus.witness(t)
	sub := subscribe(t, witness, send)

	u, err := url.Parse(bus.url)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("INFO: %q, %v", line, err)
	}
	var info struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "INFO ")), &info); err != nil || info.Nonce == "" {
		t.Fatalf("INFO %q: %v", line, err)
	}
	sig, err := alice.SignNonce([]byte(info.Nonce))
	if err != nil {
		t.Fatal(err)
	}
	connect, err := json.Marshal(map[string]any{
		"verbose": false, "pedantic": false, "protocol": 1, "headers": true,
		"nkey": alice.PublicKey(), "sig": base64.RawURLEncoding.EncodeToString(sig),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect); err != nil {
		t.Fatal(err)
	}
	for {
		line, err = r.ReadString('\n')
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		if strings.HasPrefix(line, "PONG") {
			break
		}
		if strings.HasPrefix(line, "-ERR") {
			t.Fatalf("connect refused: %q", line)
		}
	}
	// The server judges the size from the PUB line, before the payload:
	// sending only the line keeps the test free of the reset a payload
	// written into a closed connection would cause.
	if _, err := fmt.Fprintf(conn, "PUB %s %d\r\n", send, authcallout.DefaultMaxPublishBytes+1); err != nil {
		t.Fatal(err)
	}
	var refused bool
	for !refused {
		line, err = r.ReadString('\n')
		if err != nil {
			break
		}
		refused = strings.HasPrefix(line, "-ERR") && strings.Contains(strings.ToLower(line), "maximum payload")
	}
	if !refused {
		t.Errorf("no maximum payload violation from the server (last %q, %v)", line, err)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Error("the connection stays open after the violation")
	}
	if m, err := sub.NextMsg(500 * time.Millisecond); err == nil {
		t.Fatalf("a message of %d bytes over the limit was delivered", len(m.Data))
	}
	// Still served: a connect and a send under the limit.
	a, err := connectPeerURL(t, bus.url, alice)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.nc.Publish(send, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "after" {
		t.Fatalf("a send after the violation did not arrive: %v", err)
	}
}

// TestLimitsConfig: the limits are validated, and land in the NATS
// configuration of account UNIBUS.
func TestLimitsConfig(t *testing.T) {
	keys, err := authcallout.GenerateKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []authcallout.PeerLimits{
		{MaxPublishBytes: authcallout.MinPublishBytes - 1},
		{MaxPublishBytes: authcallout.MaxPayload + 1},
		{MaxPublishBytes: -1},
		{MaxSubscriptions: -2},
	} {
		if _, err := authcallout.NATSConfig(keys, l); !errors.Is(err, authcallout.ErrConfigValidation) {
			t.Errorf("NATSConfig(%+v) = %v, want ErrConfigValidation", l, err)
		}
		if _, err := authcallout.Start(context.Background(), authcallout.Config{Conn: &nats.Conn{}, Store: natstest.MemoryCalloutStore{}, Issuer: keys.Issuer, Limits: l}); !errors.Is(err, authcallout.ErrConfigValidation) {
			t.Errorf("Start with limits %+v = %v, want ErrConfigValidation", l, err)
		}
	}
	conf, err := authcallout.NATSConfig(keys, authcallout.PeerLimits{MaxPublishBytes: 2 << 20, MaxSubscriptions: -1})
	if err != nil {
		t.Fatal(err)
	}
	if want := "limits: { max_payload: 2097152, max_subscriptions: -1 }"; !strings.Contains(conf, want) {
		t.Errorf("configuration without %q:\n%s", want, conf)
	}
}

// TestStats: a second callout instance in the queue group counts what it
// admits and denies.
func TestStats(t *testing.T) {
	n := nodetest.Run(t)
	good := nodetest.AddUser(t, n, "good", false)
	pub, err := n.Keys.CalloutUser.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := n.Server.InProcessConn(nats.Nkey(pub, n.Keys.CalloutUser.Sign))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	second, err := authcallout.Start(context.Background(), authcallout.Config{Conn: nc, Store: n.Store, Issuer: n.Keys.Issuer, XKey: n.Keys.XKey})
	if err != nil {
		t.Fatal(err)
	}
	const each = 24
	for range each {
		p := mustConnect(t, n, good)
		p.nc.Close()
		if _, err := connectPeer(t, n, nodetest.NewIdentity(t)); !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("unregistered connect = %v", err)
		}
	}
	second.Stop()
	s := second.Stats()
	// The queue group spreads the requests over both instances: each gets
	// some, almost surely (a chance of 2^-24 that it gets none).
	if s.Admitted < 1 || s.Admitted > each || s.Denied < 1 || s.Denied > each || s.Busy != 0 || s.Undecodable != 0 {
		t.Errorf("stats %+v, want 1..%d admitted and denied, none busy or undecodable", s, each)
	}
}
