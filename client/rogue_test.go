package client_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// rogueWait bounds every wait of these tests, which only fails a test that
// would otherwise hang.
const rogueWait = 30 * time.Second

// rogueConn is what a rogue server's connection saw: the nonce it sent and
// the protocol lines the client sent until it closed the connection.
type rogueConn struct {
	nonce string
	lines []string
}

// connect returns the CONNECT line the client sent, if any.
func (c rogueConn) connect() (string, bool) {
	for _, l := range c.lines {
		if strings.HasPrefix(l, "CONNECT ") {
			return l, true
		}
	}
	return "", false
}

// rogueSession tells a rogue server how to treat its i-th connection.
type rogueSession struct {
	// nonce is the "nonce" of the INFO.
	nonce string
	// connectURLs is the "connect_urls" of the INFO: servers the client is
	// told about.
	connectURLs []string
	// admit answers the client's CONNECT and PING with PONG; otherwise the
	// server refuses it with an authorization error.
	admit bool
	// hangUp closes the connection right after admitting the client.
	hangUp bool
}

// rogueServer is a plain TCP listener on loopback that speaks just enough
// of the NATS client protocol to send an INFO of its choosing and read the
// client's CONNECT: a hostile server, or anyone in the middle of a
// plaintext connection. Connection i follows sessions[i] (the last one
// when there are fewer); each connection, once the client closes it, is
// reported on conns.
type rogueServer struct {
	url   string
	conns chan rogueConn
}

func startRogue(t *testing.T, sessions ...rogueSession) *rogueServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rogueServer{url: "nats://" + l.Addr().String(), conns: make(chan rogueConn, 64)}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open []net.Conn
	)
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for i := 0; ; i++ {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			s := sessions[min(i, len(sessions)-1)]
			wg.Go(func() { r.serve(c, s) })
		}
	})
	return r
}

func (r *rogueServer) serve(c net.Conn, s rogueSession) {
	defer func() { _ = c.Close() }()
	info := map[string]any{
		"server_id": "X", "server_name": "rogue", "version": "2.15.2", "proto": 1,
		"go": "go1.26", "host": "127.0.0.1", "port": 4222, "headers": true,
		"max_payload": 1 << 20, "auth_required": true, "nonce": s.nonce,
	}
	if s.connectURLs != nil {
		info["connect_urls"] = s.connectURLs
	}
	b, err := json.Marshal(info)
	if err != nil {
		panic(err)
	}
	seen := rogueConn{nonce: s.nonce}
	defer func() { r.conns <- seen }()
	if _, err := c.Write([]byte("INFO " + string(b) + "\r\n")); err != nil {
		return
	}
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		seen.lines = append(seen.lines, line)
		if line != "PING" {
			continue
		}
		if _, ok := seen.connect(); !ok {
			_, _ = c.Write([]byte("PONG\r\n"))
			continue
		}
		if !s.admit {
			_, _ = c.Write([]byte("-ERR 'Authorization Violation'\r\n"))
			continue
		}
		_, _ = c.Write([]byte("PONG\r\n"))
		if s.hangUp {
			return
		}
	}
}

// next returns the next connection the server reported.
func (r *rogueServer) next(t *testing.T) rogueConn {
	t.Helper()
	select {
	case c := <-r.conns:
		return c
	case <-time.After(rogueWait):
		t.Fatalf("the rogue server saw no connection end within %s", rogueWait)
		return rogueConn{}
	}
}

// connectSig returns the nkey and the decoded signature of a CONNECT line.
func connectSig(t *testing.T, line string) (string, []byte) {
	t.Helper()
	var opts struct {
		Nkey string `json:"nkey"`
		Sig  string `json:"sig"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "CONNECT ")), &opts); err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(opts.Sig)
	if err != nil {
		t.Fatalf("CONNECT sig %q: %v", opts.Sig, err)
	}
	return opts.Nkey, sig
}

// verifies reports whether sig is pub's signature over msg.
func verifies(t *testing.T, pub string, msg, sig []byte) bool {
	t.Helper()
	v, err := nkeys.FromPublicKey(pub)
	if err != nil {
		t.Fatalf("CONNECT nkey %q: %v", pub, err)
	}
	return v.Verify(msg, sig) == nil
}

// goodNonce returns a nonce made the way nats-server makes one.
func goodNonce(t *testing.T) string {
	t.Helper()
	var raw [11]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// craftedNonces returns application messages a hostile server would like
// the victim to sign, each sent as a login nonce: a real users.setkey
// request installing the attacker's encryption key for the victim, the
// binding of that key to the victim, and an owner's invitation.
func craftedNonces(t *testing.T, victim *identity.Identity) map[string]string {
	t.Helper()
	attackerKey := make([]byte, 1216)
	if _, err := rand.Read(attackerKey); err != nil {
		t.Fatal(err)
	}
	binding := subjects.EncKeyBindingMessage(victim.PublicKey(), attackerKey, 2, time.Now())
	body, err := json.Marshal(subjects.SetKeyRequest{EncKey: attackerKey, EncKeySig: make([]byte, 64), EncKeyVersion: 2, EncKeyIssuedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	request := subjects.CanonicalRequest(subjects.UsersSetKey, ts, goodNonce(t)+goodNonce(t), body)
	roomID, _ := subjects.NewRoomID(victim.PublicKey(), subjects.ModeE2E)
	invite, err := (&subjects.InviteRequest{RoomID: roomID, Pub: victim.PublicKey(), Epoch: 1, SealedKey: []byte("sealed"), Grant: make([]byte, e2e.GrantSize)}).SigningBytes()
	if err != nil {
		t.Fatal(err)
	}
	// What an owner signs for a key grant (see the e2e package).
	commitment := e2e.KeyCommitment(e2e.NewRoomKey())
	grant := append([]byte("unibus-key-grant-v1\n"), byte(len(roomID)))
	grant = append(append(grant, roomID...), byte(len(victim.PublicKey())))
	grant = binary.BigEndian.AppendUint64(append(grant, victim.PublicKey()...), 1)
	grant = append(grant, commitment[:]...)
	return map[string]string{
		"users.setkey request":   string(request),
		"encryption-key binding": string(binding),
		"owner invitation":       string(invite),
		"key grant":              string(grant),
		"control characters":     "\x00\x01\n\t" + goodNonce(t),
		"too long":               strings.Repeat("A", 65),
	}
}

// TestRogueServerGetsNoApplicationSignature: a server that sends, as its
// login nonce, the exact bytes of an application signature gets no
// signature: Connect fails saying the nonce is refused, and the client
// never sends a CONNECT.
func TestRogueServerGetsNoApplicationSignature(t *testing.T) {
	victim, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for name, nonce := range craftedNonces(t, victim) {
		t.Run(name, func(t *testing.T) {
			rogue := startRogue(t, rogueSession{nonce: nonce, admit: true})
			ctx, cancel := context.WithTimeout(context.Background(), rogueWait)
			defer cancel()
			c, err := client.Connect(ctx, rogue.url, victim)
			if err == nil {
				c.NATS().Close()
			}
			seen := rogue.next(t)
			if line, ok := seen.connect(); ok {
				pub, sig := connectSig(t, line)
				if verifies(t, pub, []byte(nonce), sig) {
					t.Fatalf("the client signed the crafted nonce: %s", line)
				}
				t.Fatalf("the client sent a CONNECT: %s", line)
			}
			if err == nil {
				t.Fatal("connected to a server that sent an application message as its nonce")
			}
			if !errors.Is(err, identity.ErrBadNonce) || !errors.Is(err, client.ErrConnect) {
				t.Fatalf("connect error = %v, want ErrConnect and identity.ErrBadNonce", err)
			}
			if !strings.Contains(err.Error(), "refusing to sign a login nonce") {
				t.Errorf("connect error %q does not say the nonce is refused", err)
			}
		})
	}
}

// TestRogueServerControl proves that the harness reads signatures: given a
// nonce of nats-server's form, the client's CONNECT carries its key and a
// signature that verifies over that nonce.
func TestRogueServerControl(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	nonce := goodNonce(t)
	rogue := startRogue(t, rogueSession{nonce: nonce})
	ctx, cancel := context.WithTimeout(context.Background(), rogueWait)
	defer cancel()
	c, err := client.Connect(ctx, rogue.url, id)
	if err == nil {
		_ = c.Close()
		t.Fatal("admitted by a server that refuses every client")
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect error = %v, want the rogue's authorization violation", err)
	}
	seen := rogue.next(t)
	line, ok := seen.connect()
	if !ok {
		t.Fatalf("no CONNECT among %q", seen.lines)
	}
	pub, sig := connectSig(t, line)
	if pub != id.PublicKey() {
		t.Fatalf("CONNECT nkey %q, want %s", pub, id.PublicKey())
	}
	if !verifies(t, pub, []byte(nonce), sig) {
		t.Fatalf("the CONNECT signature does not verify over the nonce %q", nonce)
	}
}

// TestRogueServerOnReconnect: the attack of issue 12, where a server that
// admitted the client sends a crafted nonce when it reconnects. The
// first login's signature verifies over its nonce; the reconnect signs
// nothing, sends no CONNECT, and reports the refused nonce.
func TestRogueServerOnReconnect(t *testing.T) {
	victim, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	crafted := craftedNonces(t, victim)["users.setkey request"]
	first := goodNonce(t)
	rogue := startRogue(t,
		rogueSession{nonce: first, admit: true, hangUp: true},
		rogueSession{nonce: crafted, admit: true},
	)
	asyncErrs := make(chan error, 16)
	closed := make(chan struct{})
	reconnected := make(chan struct{}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), rogueWait)
	defer cancel()
	c, err := client.Connect(ctx, rogue.url, victim,
		client.WithReconnectWait(10*time.Millisecond),
		client.WithNATSOptions(
			nats.MaxReconnects(1),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				select {
				case asyncErrs <- err:
				default:
				}
			}),
			nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
			nats.ReconnectHandler(func(*nats.Conn) {
				select {
				case reconnected <- struct{}{}:
				default:
				}
			}),
		))
	if err != nil {
		t.Fatalf("first connect: %v", err)
	}
	defer c.NATS().Close()

	// The first connection: admitted with a signature over its nonce.
	seen := rogue.next(t)
	line, ok := seen.connect()
	if !ok || seen.nonce != first {
		t.Fatalf("first connection: nonce %q, lines %q", seen.nonce, seen.lines)
	}
	if pub, sig := connectSig(t, line); !verifies(t, pub, []byte(first), sig) {
		t.Fatalf("the first login's signature does not verify over its nonce")
	}

	select {
	case err := <-asyncErrs:
		if !errors.Is(err, identity.ErrBadNonce) {
			t.Fatalf("async error = %v, want identity.ErrBadNonce", err)
		}
	case <-reconnected:
		c.NATS().Close()
		seen = rogue.next(t)
		line, _ := seen.connect()
		if pub, sig := connectSig(t, line); verifies(t, pub, []byte(crafted), sig) {
			t.Fatalf("the client signed the crafted nonce on reconnect: %s", line)
		}
		t.Fatalf("the client logged in again with the crafted nonce: %s", line)
	case <-time.After(rogueWait):
		t.Fatal("the reconnect reported no refused nonce")
	}
	select {
	case <-closed:
	case <-time.After(rogueWait):
		t.Fatal("the connection did not close after its last reconnect")
	}
	seen = rogue.next(t)
	if seen.nonce != crafted {
		t.Fatalf("second connection sent nonce %q", seen.nonce)
	}
	if line, ok := seen.connect(); ok {
		if pub, sig := connectSig(t, line); verifies(t, pub, []byte(crafted), sig) {
			t.Fatalf("the client signed the crafted nonce on reconnect: %s", line)
		}
		t.Fatalf("the client sent a CONNECT on reconnect: %s", line)
	}
}

// TestAnnouncedPlaintextServerRefused: a loopback server that announces
// a server beyond loopback (INFO connect_urls) does not get the client to
// connect to it in plaintext on reconnect.
func TestAnnouncedPlaintextServerRefused(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	const far = "10.255.255.1:4222"
	rogue := startRogue(t,
		rogueSession{nonce: goodNonce(t), admit: true, hangUp: true, connectURLs: []string{far}},
		rogueSession{nonce: goodNonce(t), admit: true, connectURLs: []string{far}},
	)
	dialErrs := make(chan error, 64)
	ctx, cancel := context.WithTimeout(context.Background(), rogueWait)
	defer cancel()
	c, err := client.Connect(ctx, rogue.url, id,
		client.WithReconnectWait(10*time.Millisecond),
		client.WithNATSOptions(nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			select {
			case dialErrs <- err:
			default:
			}
		})))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.NATS().Close()
	deadline := time.After(rogueWait)
	for {
		select {
		case err := <-dialErrs:
			if !errors.Is(err, client.ErrInsecureURL) {
				continue // the loopback server, say, between connections
			}
			for _, want := range []string{far, "WithInsecure"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			return
		case <-deadline:
			t.Fatalf("no refusal to dial %s within %s", far, rogueWait)
		}
	}
}

func TestConnectRefusesPlaintextBeyondLoopback(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url  string
		want string // in the error
	}{
		{"nats://example.com:4222", "nats://example.com:4222: example.com is not a loopback address"},
		{"nats://10.1.2.3", "10.1.2.3 is not a loopback address"},
		{"example.com:4222", "nats://example.com:4222"},
		{"ws://example.com:8080", "ws://example.com:8080"},
		{"NATS://Example.COM:4222", "Example.COM"},
		{"nats://[2001:db8::1]:4222", "2001:db8::1 is not a loopback address"},
		{"nats://0.0.0.0:4222", "0.0.0.0 is not a loopback address"},
		{"nats://:4222", "the empty host"},
		{"nats://127.0.0.1:4222,nats://10.1.2.3:4222", "(server 2 of 2)"},
		{"tls://example.com:4222, nats://example.com:4223", "nats://example.com:4223 (server 2 of 2)"},
		{"nats://127.0.0.1.example.com:4222", "127.0.0.1.example.com"},
		{"nats://localhost.example.com:4222", "localhost.example.com"},
		{"nats://bob:s3cr3t@example.com:4222", "nats://example.com:4222"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), rogueWait)
			defer cancel()
			c, err := client.Connect(ctx, tc.url, id)
			if err == nil {
				_ = c.Close()
				t.Fatal("connected")
			}
			if !errors.Is(err, client.ErrInsecureURL) || !errors.Is(err, client.ErrConnect) {
				t.Fatalf("error = %v, want ErrInsecureURL and ErrConnect", err)
			}
			for _, want := range []string{tc.want, "tls://", "client.WithInsecure()"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("error %q repeats the URL's password", err)
			}
		})
	}
}

// TestConnectAllowsLoopbackPlaintext: plaintext URLs on loopback pass the
// check and are dialed (nothing listens: the error is the dial's).
func TestConnectAllowsLoopbackPlaintext(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{
		"nats://127.0.0.1:" + port,
		"127.0.0.1:" + port,
		"nats://127.8.9.10:" + port,
		"nats://localhost:" + port,
		"nats://LOCALHOST:" + port,
		"nats://[::1]:" + port,
		"nats://127.0.0.1:" + port + ",nats://localhost:" + port,
		"",
	} {
		t.Run(url, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), rogueWait)
			defer cancel()
			c, err := client.Connect(ctx, url, id)
			if err == nil {
				_ = c.Close() // something listens on the default port
				return
			}
			if errors.Is(err, client.ErrInsecureURL) {
				t.Fatalf("loopback URL refused: %v", err)
			}
		})
	}
}
