package authcallout_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
)

// kickBus is a server with the unibus accounts, the store and the auth
// callout, and no watcher: a test starts its own with the settings it
// needs, and nothing else kicks. (A node always runs a watcher of its own.)
type kickBus struct {
	url   string
	store *kvstore.Store
	// sys is a system-account connection, for kickers.
	sys  *nats.Conn
	keys authcallout.Keys
	// dial connects in-process as one of the deployment's users, as
	// tester: a user of account UNIBUS with every right, or as
	// authTester: a user of account AUTH with every right (it may ask the
	// callout for a user JWT as a server does).
	dial       func(kp nkeys.KeyPair, name string, opts ...nats.Option) *nats.Conn
	tester     nkeys.KeyPair
	authTester nkeys.KeyPair
}

func startKickBus(t testing.TB) *kickBus {
	t.Helper()
	keys, err := authcallout.GenerateKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	conf, err := authcallout.NATSConfig(keys, authcallout.PeerLimits{})
	if err != nil {
		t.Fatal(err)
	}
	// Users of accounts UNIBUS and AUTH without restrictions, for tests
	// that play a part no deployment user may (a witness of what reaches a
	// subject; a server asking the callout): they bypass the callout as
	// the deployment's users do.
	tester, testerPub := natstest.NewKey(t, nkeys.CreateUser)
	authTester, authTesterPub := natstest.NewKey(t, nkeys.CreateUser)
	srv := natstest.RunServer(t, func(c *embedded.Config) {
		c.Customize = func(o *server.Options) error {
			if err := o.ProcessConfigString(conf); err != nil {
				return err
			}
			for _, acc := range o.Accounts {
				switch acc.Name {
				case authcallout.AccountUnibus:
					o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: testerPub, Account: acc})
				case authcallout.AccountAuth:
					o.Nkeys = append(o.Nkeys, &server.NkeyUser{Nkey: authTesterPub, Account: acc})
				}
			}
			o.AuthCallout.AuthUsers = append(o.AuthCallout.AuthUsers, testerPub, authTesterPub)
			return nil
		}
	})
	dial := func(kp nkeys.KeyPair, name string, opts ...nats.Option) *nats.Conn {
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		nc, err := srv.InProcessConn(append([]nats.Option{nats.Nkey(pub, kp.Sign), nats.Name(name)}, opts...)...)
		if err != nil {
			t.Fatalf("connect %s: %v", name, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	b := &kickBus{url: srv.ClientURL(), keys: keys, dial: dial, tester: tester, authTester: authTester}
	calloutConn := dial(keys.CalloutUser, "callout")
	b.sys = dial(keys.SystemUser, "system")
	js, err := jetstream.New(dial(keys.StoreUser, "store"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if b.store, err = kvstore.Open(ctx, js, kvstore.Config{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	svc, err := authcallout.Start(ctx, authcallout.Config{Conn: calloutConn, Store: b.store, Issuer: keys.Issuer, XKey: keys.XKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Stop)
	return b
}

// watch starts a watcher on the bus with cfg (its store and the kicker's
// connection filled in when unset), stopped at the end of the test.
func (b *kickBus) watch(t testing.TB, cfg authcallout.WatcherConfig) *authcallout.Watcher {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = b.store
	}
	if cfg.Kicker == nil {
		cfg.Kicker = &authcallout.Kicker{}
	}
	if cfg.Kicker.Conn == nil {
		cfg.Kicker.Conn = b.sys
	}
	w, err := authcallout.StartWatcherWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

// addUser registers a fresh identity in the store.
func addUser(t testing.TB, st *kvstore.Store, name string) *identity.Identity {
	t.Helper()
	id := nodetest.NewIdentity(t)
	if _, err := st.AddUser(context.Background(), kvstore.User{Pub: id.PublicKey(), Name: name}); err != nil {
		t.Fatalf("add user %s: %v", name, err)
	}
	return id
}

// newCleartextRoom creates a cleartext room of owner's (no room keys to
// seal) and returns its ID.
func newCleartextRoom(t testing.TB, st *kvstore.Store, owner *identity.Identity) string {
	t.Helper()
	id, salt := subjects.NewRoomID(owner.PublicKey(), subjects.ModeCleartext)
	r, err := st.CreateRoom(context.Background(), kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeCleartext, Owner: owner.PublicKey()}, kvstore.SealedKey{})
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	return r.ID
}

// rawConn is a peer connection spoken by hand (INFO, CONNECT with the
// signed nonce, PING, PONG) that then only holds its socket: thousands of
// them cost no goroutine on the client's side.
type rawConn struct {
	net.Conn
}

// errRefused is a connection the server refused (its -ERR).
var errRefused = errors.New("refused")

// rawConnect logs id in at url; a refusal is errRefused.
func rawConnect(url string, id *identity.Identity) (*rawConn, error) {
	addr := strings.TrimPrefix(url, "nats://")
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*rawConn, error) {
		conn.Close()
		return nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return fail(err)
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return fail(fmt.Errorf("read INFO: %w", err))
	}
	var info struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "INFO ")), &info); err != nil {
		return fail(fmt.Errorf("decode INFO: %w", err))
	}
	sig, err := id.SignNonce([]byte(info.Nonce))
	if err != nil {
		return fail(err)
	}
	connect, err := json.Marshal(map[string]any{
		"verbose": false, "pedantic": false, "protocol": 1, "lang": "raw", "version": "0",
		"nkey": id.PublicKey(), "sig": base64.RawURLEncoding.EncodeToString(sig),
	})
	if err != nil {
		return fail(err)
	}
	if _, err := fmt.Fprintf(conn, "CONNECT %s\r\nPING\r\n", connect); err != nil {
		return fail(err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return fail(fmt.Errorf("read PONG: %w", err))
		}
		switch line = strings.TrimSpace(line); {
		case line == "PONG":
			if err := conn.SetDeadline(time.Time{}); err != nil {
				return fail(err)
			}
			return &rawConn{Conn: conn}, nil
		case strings.HasPrefix(line, "-ERR"):
			return fail(fmt.Errorf("%w: %s", errRefused, line))
		}
	}
}

// rawConnectMany opens n connections as id, a few at a time.
func rawConnectMany(t testing.TB, url string, id *identity.Identity, n int) []*rawConn {
	t.Helper()
	conns := make([]*rawConn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	const parallel = 8
	for w := range parallel {
		wg.Go(func() {
			for i := w; i < n; i += parallel {
				conns[i], errs[i] = rawConnect(url, id)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		t.Fatalf("open %d connections: %v", n, err)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// closedBy reports whether the server closed c by deadline (anything it
// sends meanwhile, such as a PING, is read and ignored). A deadline
// already past leaves a few milliseconds to read what is there: a read
// past its deadline returns nothing, not even the end of the stream.
func (c *rawConn) closedBy(deadline time.Time) bool {
	if err := c.SetReadDeadline(later(deadline, time.Now().Add(10*time.Millisecond))); err != nil {
		return true
	}
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded))
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// countOpen returns how many of conns the server has not closed by
// deadline.
func countOpen(conns []*rawConn, deadline time.Time) int {
	open := 0
	for _, c := range conns {
		if !c.closedBy(deadline) {
			open++
		}
	}
	return open
}

// waitFor polls cond every few milliseconds until it holds, failing the
// test after within.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond) // poll interval; the deadline bounds the wait
	}
}
