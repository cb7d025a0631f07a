package mobile_test

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/mobile"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/tests/nodetest"
)

// bus is a TLS node with the callout on.
type bus struct{ *nodetest.Bus }

func newBus(t *testing.T) *bus { return &bus{nodetest.NewBus(t)} }

// user registers a user and writes its seed file (0600); it returns the
// seed's path.
func (b *bus) user(t *testing.T, name string) string {
	t.Helper()
	id := nodetest.AddUser(t, b.Node, name, false)
	path := filepath.Join(t.TempDir(), name+".nk")
	if err := identity.Save(path, id); err != nil {
		t.Fatal(err)
	}
	return path
}

func (b *bus) session(t *testing.T, name string) *mobile.Session {
	t.Helper()
	seed := b.user(t, name)
	s, err := mobile.NewSession(b.Node.ClientURL(), seed, b.CA)
	if err != nil {
		t.Fatalf("new session %s: %v", name, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := os.Stat(seed + ".enc"); err != nil {
		t.Fatalf("encryption key not saved beside the seed: %v", err)
	}
	return s
}

// recorder is a MessageHandler that records what it is given.
type recorder struct {
	msgs chan *mobile.Message
	errs chan string
}

func newRecorder() *recorder {
	return &recorder{msgs: make(chan *mobile.Message, 256), errs: make(chan string, 256)}
}

func (r *recorder) OnMessage(m *mobile.Message) { r.msgs <- m }

func (r *recorder) OnError(roomID, err string) { r.errs <- roomID + ": " + err }

// await returns the first recorded message satisfying ok, sending with send
// every 200ms meanwhile (a new member's permissions arrive shortly after the
// invite).
func await(t *testing.T, r *recorder, send func() error, ok func(*mobile.Message) bool) *mobile.Message {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if send != nil {
			if err := send(); err != nil {
				t.Fatalf("send: %v", err)
			}
		}
		tick := time.After(200 * time.Millisecond)
	drain:
		for {
			select {
			case m := <-r.msgs:
				if ok(m) {
					return m
				}
			case e := <-r.errs:
				t.Logf("rejected frame: %s", e)
			case <-tick:
				break drain
			}
		}
	}
	t.Fatal("no matching message within 10s")
	return nil
}

type roomJSON struct {
	RoomID string `json:"room_id"`
	Role   string `json:"role"`
	Mode   string `json:"mode"`
	Epoch  int64  `json:"epoch"`
}

func rooms(t *testing.T, s *mobile.Session) []roomJSON {
	t.Helper()
	js, err := s.RoomsJSON()
	if err != nil {
		t.Fatalf("rooms: %v", err)
	}
	var out []roomJSON
	if err := json.Unmarshal([]byte(js), &out); err != nil {
		t.Fatalf("rooms JSON %q: %v", js, err)
	}
	return out
}

func TestSessionEndToEnd(t *testing.T) {
	b := newBus(t)
	alice, bob := b.session(t, "alice"), b.session(t, "bob")
	if !strings.HasPrefix(alice.PublicKey(), "U") || alice.PublicKey() == bob.PublicKey() {
		t.Fatalf("public keys %q, %q", alice.PublicKey(), bob.PublicKey())
	}

	if js, err := bob.RoomsJSON(); err != nil || js != "[]" {
		t.Fatalf("bob's rooms before the invite = %q, %v", js, err)
	}
	room, err := alice.CreateRoom("ops")
	if err != nil {
		t.Fatalf("create room: %v", err)
	}
	if err := alice.Invite(room, bob.PublicKey()); err != nil {
		t.Fatalf("invite: %v", err)
	}
	if js, err := bob.RoomsJSON(); err != nil || js != "[]" {
		t.Fatalf("bob's rooms before accepting = %q, %v", js, err)
	}
	if err := bob.Accept(room); err != nil {
		t.Fatalf("accept: %v", err)
	}
	got := rooms(t, bob)
	if len(got) != 1 || got[0].RoomID != room || got[0].Role != "member" || got[0].Mode != "e2e" || got[0].Epoch != 1 {
		t.Fatalf("bob's rooms = %+v", got)
	}
	if got := rooms(t, alice); len(got) != 1 || got[0].Role != "owner" {
		t.Fatalf("alice's rooms = %+v", got)
	}

	r := newRecorder()
	if err := bob.Subscribe(room, r); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := bob.Subscribe(room, r); err == nil {
		t.Fatal("a second subscription to the same room was accepted")
	}

	before := time.Now().UnixMilli()
	var sent []string
	hello := await(t, r, func() error {
		id, err := alice.Send(room, "hello bob")
		sent = append(sent, id)
		return err
	}, func(m *mobile.Message) bool { return m.Text == "hello bob" })
	if hello.Sender != alice.PublicKey() || hello.Room != room || hello.Type != mobile.TypeMsg ||
		hello.Epoch != 1 || hello.Thread != "" || hello.ReplyTo != "" || hello.ID == "" {
		t.Fatalf("received %+v", hello)
	}
	if hello.TimeUnixMs < before-1000 || hello.TimeUnixMs > time.Now().UnixMilli()+1000 {
		t.Fatalf("time %d not near now (%d)", hello.TimeUnixMs, before)
	}
	found := false
	for _, id := range sent {
		found = found || id == hello.ID
	}
	if !found {
		t.Fatalf("received ID %s is none of the sent IDs %v", hello.ID, sent)
	}

	// Permissions are in place now: a reply and a reaction arrive at once.
	replyID, err := alice.Reply(room, hello.ID, "in a thread")
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	reply := await(t, r, nil, func(m *mobile.Message) bool { return m.ID == replyID })
	if reply.Text != "in a thread" || reply.Thread != hello.ID || reply.ReplyTo != hello.ID || reply.Type != mobile.TypeMsg {
		t.Fatalf("reply %+v", reply)
	}
	reactID, err := alice.React(room, replyID, "👍")
	if err != nil {
		t.Fatalf("react: %v", err)
	}
	react := await(t, r, nil, func(m *mobile.Message) bool { return m.ID == reactID })
	if react.Text != "👍" || react.ReplyTo != replyID || react.Type != mobile.TypeReact {
		t.Fatalf("reaction %+v", react)
	}

	// Bob answers; alice, subscribed, receives it.
	ra := newRecorder()
	if err := alice.Subscribe(room, ra); err != nil {
		t.Fatalf("alice subscribe: %v", err)
	}
	fromBob := await(t, ra, func() error { _, err := bob.Send(room, "hi alice"); return err },
		func(m *mobile.Message) bool { return m.Text == "hi alice" })
	if fromBob.Sender != bob.PublicKey() {
		t.Fatalf("from bob %+v", fromBob)
	}

	// After Unsubscribe nothing more is delivered.
	if err := bob.Unsubscribe(room); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}
	if err := bob.Unsubscribe(room); err == nil {
		t.Fatal("unsubscribing twice succeeded")
	}
	for len(r.msgs) > 0 {
		<-r.msgs
	}
	if _, err := alice.Send(room, "after"); err != nil {
		t.Fatal(err)
	}
	_ = await(t, ra, nil, func(m *mobile.Message) bool { return m.Text == "after" })
	select {
	case m := <-r.msgs:
		t.Fatalf("delivered after unsubscribe: %+v", m)
	case <-time.After(300 * time.Millisecond):
	}

	// Close ends alice's subscription; every method then fails.
	if err := alice.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := alice.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := alice.Send(room, "closed"); !errors.Is(err, mobile.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
	if err := alice.Subscribe(room, ra); !errors.Is(err, mobile.ErrClosed) {
		t.Fatalf("subscribe after close: %v", err)
	}
	if _, err := alice.RoomsJSON(); !errors.Is(err, mobile.ErrClosed) {
		t.Fatalf("rooms after close: %v", err)
	}
}

// invitationJSON is an invitation in InvitationsJSON.
type invitationJSON struct {
	RoomID    string    `json:"room_id"`
	Name      string    `json:"name"`
	Mode      string    `json:"mode"`
	Owner     string    `json:"owner"`
	Epoch     uint64    `json:"epoch"`
	InvitedAt time.Time `json:"invited_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func invitations(t *testing.T, s *mobile.Session) []invitationJSON {
	t.Helper()
	js, err := s.InvitationsJSON()
	if err != nil {
		t.Fatalf("invitations: %v", err)
	}
	var out []invitationJSON
	if err := json.Unmarshal([]byte(js), &out); err != nil {
		t.Fatalf("invitations JSON %q: %v", js, err)
	}
	return out
}

// TestSessionInvitations: an invitation is listed, grants nothing (no
// room, no subscription) until accepted, and a declined one is gone.
func TestSessionInvitations(t *testing.T) {
	b := newBus(t)
	alice, bob := b.session(t, "alice"), b.session(t, "bob")
	if js, err := bob.InvitationsJSON(); err != nil || js != "[]" {
		t.Fatalf("bob's invitations before any = %q, %v", js, err)
	}
	ops, err := alice.CreateRoom("ops")
	if err != nil {
		t.Fatal(err)
	}
	spam, err := alice.CreateRoom("spam")
	if err != nil {
		t.Fatal(err)
	}
	for _, room := range []string{ops, spam} {
		if err := alice.Invite(room, bob.PublicKey()); err != nil {
			t.Fatalf("invite: %v", err)
		}
	}
	got := invitations(t, bob)
	if len(got) != 2 {
		t.Fatalf("bob's invitations = %+v, want 2", got)
	}
	for _, inv := range got {
		if (inv.RoomID != ops && inv.RoomID != spam) || inv.Owner != alice.PublicKey() || inv.Mode != "e2e" || inv.Epoch != 1 ||
			inv.InvitedAt.IsZero() || !inv.ExpiresAt.After(inv.InvitedAt) {
			t.Errorf("invitation %+v", inv)
		}
	}
	if js, err := bob.RoomsJSON(); err != nil || js != "[]" {
		t.Errorf("bob's rooms before accepting = %q, %v", js, err)
	}
	if err := bob.Subscribe(ops, newRecorder()); err == nil {
		t.Error("subscribed to a room before accepting its invitation")
	}

	if err := bob.Decline(spam); err != nil {
		t.Fatalf("decline: %v", err)
	}
	if err := bob.Decline(spam); err == nil {
		t.Error("declined the same invitation twice")
	}
	if err := bob.Accept(spam); err == nil {
		t.Error("accepted a declined invitation")
	}
	if err := bob.Accept(ops); err != nil {
		t.Fatalf("accept: %v", err)
	}
	if got := invitations(t, bob); len(got) != 0 {
		t.Errorf("bob's invitations after answering = %+v", got)
	}
	if got := rooms(t, bob); len(got) != 1 || got[0].RoomID != ops || got[0].Role != "member" {
		t.Fatalf("bob's rooms after accepting = %+v", got)
	}
	r := newRecorder()
	if err := bob.Subscribe(ops, r); err != nil {
		t.Fatalf("subscribe after accepting: %v", err)
	}
	await(t, r, func() error { _, err := alice.Send(ops, "welcome"); return err },
		func(m *mobile.Message) bool { return m.Text == "welcome" })

	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"accept":      func() error { return bob.Accept(ops) },
		"decline":     func() error { return bob.Decline(ops) },
		"invitations": func() error { _, err := bob.InvitationsJSON(); return err },
	} {
		if err := f(); !errors.Is(err, mobile.ErrClosed) {
			t.Errorf("%s after close: %v, want ErrClosed", name, err)
		}
	}
}

func TestSessionConcurrentUse(t *testing.T) {
	b := newBus(t)
	alice := b.session(t, "alice")
	room, err := alice.CreateRoom("busy")
	if err != nil {
		t.Fatal(err)
	}
	r := newRecorder()
	if err := alice.Subscribe(room, r); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 40)
	for i := range 10 {
		go func() {
			_, err := alice.Send(room, "m")
			errs <- err
		}()
		go func() {
			_, err := alice.RoomsJSON()
			errs <- err
		}()
		go func() {
			err := alice.Subscribe(room, r) // already subscribed
			if err == nil {
				err = errors.New("duplicate subscription accepted")
			} else {
				err = nil
			}
			errs <- err
		}()
		go func() {
			if i == 9 {
				errs <- alice.Close()
				return
			}
			errs <- nil
		}()
	}
	for range 40 {
		if err := <-errs; err != nil && !errors.Is(err, mobile.ErrClosed) {
			t.Error(err)
		}
	}
}

func TestNewSessionErrors(t *testing.T) {
	b := newBus(t)
	seed := b.user(t, "carol")
	url := b.Node.ClientURL()

	garbage := filepath.Join(t.TempDir(), "garbage.nk")
	if err := os.WriteFile(garbage, []byte("not a seed"), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, url, seed, ca string
		want                string
	}{
		{"empty URL", "", seed, b.CA, "URL is empty"},
		{"empty seed path", url, "", b.CA, "seed path is empty"},
		{"missing seed", url, filepath.Join(t.TempDir(), "none.nk"), b.CA, "load identity"},
		{"bad seed", url, garbage, b.CA, "load identity"},
		{"missing CA", url, seed, filepath.Join(t.TempDir(), "none.pem"), "none.pem"},
		{"non-PEM CA", url, seed, notPEM, "no PEM"},
		{"plaintext URL with CA", strings.Replace(url, "tls://", "nats://", 1), seed, b.CA, "tls://"},
		{"plaintext URL beyond loopback", "nats://10.1.2.3:4222", seed, "", "NewInsecureSession"},
		{"scheme-less URL beyond loopback", "bus.example:4222", seed, "", "NewInsecureSession"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := mobile.NewSession(tc.url, tc.seed, tc.ca)
			if err == nil {
				_ = s.Close()
				t.Fatal("NewSession succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			t.Logf("%s: %v", tc.name, err)
		})
	}
}

func TestSessionArgumentErrors(t *testing.T) {
	b := newBus(t)
	s := b.session(t, "dave")
	if err := s.Subscribe("room", nil); err == nil {
		t.Fatal("nil handler accepted")
	}
	if _, err := s.Reply("room", "", "x"); err == nil {
		t.Fatal("empty parent accepted")
	}
	if _, err := s.React("room", "", "x"); err == nil {
		t.Fatal("empty target accepted")
	}
	if _, err := s.Send("not a room", "x"); err == nil {
		t.Fatal("send to an invalid room ID succeeded")
	}
	if err := s.Unsubscribe("nothing"); err == nil {
		t.Fatal("unsubscribe without a subscription succeeded")
	}
}

// TestInsecureSession: plaintext on loopback needs no opt-in;
// NewInsecureSession allows it beyond loopback too.
func TestInsecureSession(t *testing.T) {
	n := nodetest.Run(t)
	url := n.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("node URL %q is not plaintext on loopback", url)
	}
	b := &bus{&nodetest.Bus{Node: n}}
	for name, open := range map[string]func(seed string) (*mobile.Session, error){
		"NewSession":         func(seed string) (*mobile.Session, error) { return mobile.NewSession(url, seed, "") },
		"NewInsecureSession": func(seed string) (*mobile.Session, error) { return mobile.NewInsecureSession(url, seed) },
	} {
		t.Run(name, func(t *testing.T) {
			s, err := open(b.user(t, "erin"))
			if err != nil {
				t.Fatalf("%s on loopback: %v", name, err)
			}
			if _, err := s.RoomsJSON(); err != nil {
				t.Fatalf("rooms: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatalf("close: %v", err)
			}
		})
	}

	// Beyond loopback: a local address that is not loopback, where nothing
	// listens. NewInsecureSession dials it; NewSession refuses to.
	ip := nonLoopbackIP(t)
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("listen on %s: %v", ip, err)
	}
	far := "nats://" + l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	seed := b.user(t, "frank")
	if s, err := mobile.NewSession(far, seed, ""); err == nil || !errors.Is(err, client.ErrInsecureURL) {
		if s != nil {
			_ = s.Close()
		}
		t.Fatalf("NewSession(%s) error = %v, want ErrInsecureURL", far, err)
	}
	s, err := mobile.NewInsecureSession(far, seed)
	if err == nil {
		_ = s.Close()
		t.Fatalf("NewInsecureSession(%s) connected where nothing listens", far)
	}
	if errors.Is(err, client.ErrInsecureURL) {
		t.Fatalf("NewInsecureSession(%s) refused plaintext: %v", far, err)
	}
}

// nonLoopbackIP returns an IPv4 address of this machine that is not
// loopback, or skips the test.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("interface addresses: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address")
	return ""
}
