package mobile_test

import (
	"encoding/json"
	"errors"
	"fmt"
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
	var sent []*mobile.Sent
	hello := await(t, r, func() error {
		s, err := alice.Send(room, "hello bob")
		sent = append(sent, s)
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
	for _, s := range sent {
		found = found || (s.ID == hello.ID && s.Seq == hello.Seq && s.Seq > 0)
	}
	if !found {
		t.Fatalf("received ID %s is none of the sent IDs %v", hello.ID, sent)
	}

	// A reply and a reaction arrive, each with its seq, after hello's.
	replySent, err := alice.Reply(room, hello.ID, "in a thread")
	if err != nil {
		t.Fatalf("reply: %v", err)
	}
	reply := await(t, r, nil, func(m *mobile.Message) bool { return m.ID == replySent.ID })
	if reply.Text != "in a thread" || reply.Thread != hello.ID || reply.ReplyTo != hello.ID || reply.Type != mobile.TypeMsg ||
		reply.Seq != replySent.Seq || reply.Seq <= hello.Seq {
		t.Fatalf("reply %+v (sent %+v)", reply, replySent)
	}
	reactSent, err := alice.React(room, replySent.ID, "👍")
	if err != nil {
		t.Fatalf("react: %v", err)
	}
	react := await(t, r, nil, func(m *mobile.Message) bool { return m.ID == reactSent.ID })
	if react.Text != "👍" || react.ReplyTo != replySent.ID || react.Type != mobile.TypeReact || react.Seq != reactSent.Seq {
		t.Fatalf("reaction %+v", react)
	}
	// The position follows, once the handler returned.
	waitPosition(t, bob, room, react.Seq)

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
	for _, tc := range []struct {
		from, since, last int64
		want              string
	}{
		{1, 0, 5, "give one start point, not 2"},
		{1, 1, 1, "give one start point, not 3"},
		{-1, 0, 0, "negative start point"},
		{0, 0, -5, "negative start point"},
	} {
		if err := s.SubscribeFrom("room", newRecorder(), tc.from, tc.since, tc.last); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SubscribeFrom(%d, %d, %d): %v, want %q", tc.from, tc.since, tc.last, err, tc.want)
		}
	}
	if _, err := s.Position("room"); err == nil {
		t.Fatal("position without a subscription")
	}
	if _, err := s.HistoryJSON("room", -1, 0, 0, 0, 0); err == nil {
		t.Fatal("history from a negative seq")
	}
	if _, err := s.HistoryJSON("not a room", 0, 0, 0, 0, 0); err == nil {
		t.Fatal("history of an invalid room ID")
	}
	if err := s.WatchEvents(0, nil); err == nil {
		t.Fatal("nil event handler accepted")
	}
	if err := s.WatchEvents(-1, newEventRecorder()); err == nil {
		t.Fatal("negative events seq accepted")
	}
	if err := s.StopEvents(); err == nil {
		t.Fatal("StopEvents without WatchEvents succeeded")
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

// waitPosition waits until the room's subscription position is seq (it
// moves once the handler has returned).
func waitPosition(t *testing.T, s *mobile.Session, room string, seq int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pos, err := s.Position(room)
		if err == nil && pos == seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("position %d, %v; want %d", pos, err, seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// collect returns the texts of the next n messages r receives.
func collect(t *testing.T, r *recorder, n int) []*mobile.Message {
	t.Helper()
	var got []*mobile.Message
	deadline := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case m := <-r.msgs:
			got = append(got, m)
		case e := <-r.errs:
			t.Fatalf("rejected frame: %s", e)
		case <-deadline:
			t.Fatalf("%d of %d messages within 10s", len(got), n)
		}
	}
	return got
}

func textsOf(msgs []*mobile.Message) string {
	s := make([]string, len(msgs))
	for i, m := range msgs {
		s[i] = m.Text
	}
	return strings.Join(s, "|")
}

// historyPage is HistoryJSON's JSON.
type historyPage struct {
	Messages []struct {
		Seq        int64  `json:"seq"`
		ID         string `json:"id"`
		Room       string `json:"room"`
		Sender     string `json:"sender"`
		Type       string `json:"type"`
		ReplyTo    string `json:"reply_to"`
		Text       string `json:"text"`
		TimeUnixMs int64  `json:"time_unix_ms"`
		Epoch      int64  `json:"epoch"`
	} `json:"messages"`
	Rejected []string `json:"rejected"`
	Next     int64    `json:"next"`
	LastSeq  int64    `json:"last_seq"`
	FirstSeq int64    `json:"first_seq"`
}

func history(t *testing.T, s *mobile.Session, room string, from, since, last, before, limit int64) historyPage {
	t.Helper()
	js, err := s.HistoryJSON(room, from, since, last, before, limit)
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	var p historyPage
	if err := json.Unmarshal([]byte(js), &p); err != nil {
		t.Fatalf("history JSON %q: %v", js, err)
	}
	if p.Messages == nil || p.Rejected == nil {
		t.Fatalf("history JSON %q: null lists", js)
	}
	return p
}

func (p historyPage) texts() string {
	s := make([]string, len(p.Messages))
	for i, m := range p.Messages {
		s[i] = m.Text
	}
	return strings.Join(s, "|")
}

// TestSessionStartPointsAndHistory: a phone resumes a room where it
// stopped (SubscribeFrom with the last Seq + 1), or opens it with its last
// messages or those since a time, and scrolls back with HistoryJSON.
func TestSessionStartPointsAndHistory(t *testing.T) {
	b := newBus(t)
	alice, bob := b.session(t, "alice"), b.session(t, "bob")
	room, err := alice.CreateRoom("ops")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Invite(room, bob.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := bob.Accept(room); err != nil {
		t.Fatal(err)
	}
	start := time.Now().UnixMilli()
	var sent []*mobile.Sent
	for i := range 5 {
		s, err := alice.Send(room, fmt.Sprintf("m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if s.ID == "" || s.Seq <= 0 || (i > 0 && s.Seq <= sent[i-1].Seq) {
			t.Fatalf("sent %+v after %+v", s, sent)
		}
		sent = append(sent, s)
	}

	// The last 2, then what comes.
	r := newRecorder()
	if err := bob.SubscribeFrom(room, r, 0, 0, 2); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, r, 2); textsOf(got) != "m3|m4" || got[1].Seq != sent[4].Seq || got[0].ID != sent[3].ID {
		t.Fatalf("last 2: %q", textsOf(got))
	}
	waitPosition(t, bob, room, sent[4].Seq)
	if err := bob.Unsubscribe(room); err != nil {
		t.Fatal(err)
	}
	// Away: two more messages.
	for _, text := range []string{"m5", "m6"} {
		s, err := alice.Send(room, text)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, s)
	}
	// Back: resumed after the last seen, nothing missed or twice, then
	// live.
	if err := bob.SubscribeFrom(room, r, sent[4].Seq+1, 0, 0); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, r, 2); textsOf(got) != "m5|m6" {
		t.Fatalf("resumed: %q", textsOf(got))
	}
	if _, err := alice.Send(room, "m7"); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, r, 1); textsOf(got) != "m7" {
		t.Fatalf("live: %q", textsOf(got))
	}
	if err := bob.Unsubscribe(room); err != nil {
		t.Fatal(err)
	}
	// Since a time: everything sent since the test began.
	if err := bob.SubscribeFrom(room, r, 0, start, 0); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, r, 8); textsOf(got) != "m0|m1|m2|m3|m4|m5|m6|m7" {
		t.Fatalf("since: %q", textsOf(got))
	}

	// History: forward pages, and back from a message.
	p := history(t, bob, room, 0, 0, 0, 0, 3)
	if p.texts() != "m0|m1|m2" || p.Next != sent[3].Seq || p.FirstSeq <= 0 || p.LastSeq < sent[6].Seq {
		t.Fatalf("first page %+v", p)
	}
	if m := p.Messages[0]; m.Seq != sent[0].Seq || m.ID != sent[0].ID || m.Room != room || m.Sender != alice.PublicKey() ||
		m.Type != mobile.TypeMsg || m.Epoch != 1 || m.TimeUnixMs < start-1000 {
		t.Fatalf("first message %+v", m)
	}
	if p := history(t, bob, room, p.Next, 0, 0, 0, 3); p.texts() != "m3|m4|m5" {
		t.Fatalf("second page %q", p.texts())
	}
	if p := history(t, bob, room, 0, 0, 2, sent[3].Seq, 0); p.texts() != "m1|m2" {
		t.Fatalf("two before m3: %q", p.texts())
	}
	if p := history(t, bob, room, 0, 0, 2, 0, 0); p.texts() != "m6|m7" {
		t.Fatalf("the newest two: %q", p.texts())
	}
	if p := history(t, bob, room, 0, time.Now().Add(time.Hour).UnixMilli(), 0, 0, 0); p.texts() != "" {
		t.Fatalf("since the future: %q", p.texts())
	}
}

// eventRecorder is an EventHandler that records the events' JSON.
type eventRecorder struct{ events chan string }

func newEventRecorder() *eventRecorder { return &eventRecorder{events: make(chan string, 64)} }

func (r *eventRecorder) OnEvent(eventJSON string) { r.events <- eventJSON }

type eventJSON struct {
	Seq    int64  `json:"seq"`
	Type   string `json:"type"`
	RoomID string `json:"room_id"`
	By     string `json:"by"`
	Epoch  int64  `json:"epoch"`
}

func (r *eventRecorder) next(t *testing.T) eventJSON {
	t.Helper()
	select {
	case js := <-r.events:
		var ev eventJSON
		if err := json.Unmarshal([]byte(js), &ev); err != nil {
			t.Fatalf("event JSON %q: %v", js, err)
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return eventJSON{}
	}
}

// TestSessionEvents: invitations and removals reach the phone as events,
// with no polling; a phone that was away gets those it missed from its
// last position on.
func TestSessionEvents(t *testing.T) {
	b := newBus(t)
	alice, bob := b.session(t, "alice"), b.session(t, "bob")
	r := newEventRecorder()
	if err := bob.WatchEvents(0, r); err != nil {
		t.Fatal(err)
	}
	if err := bob.WatchEvents(0, r); err == nil {
		t.Fatal("a second WatchEvents was accepted")
	}
	room, err := alice.CreateRoom("ops")
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Invite(room, bob.PublicKey()); err != nil {
		t.Fatal(err)
	}
	inv := r.next(t)
	if inv.Type != "invited" || inv.RoomID != room || inv.By != alice.PublicKey() || inv.Seq <= 0 {
		t.Fatalf("event %+v, want bob invited to %s by alice", inv, room)
	}
	if err := bob.Accept(room); err != nil {
		t.Fatal(err)
	}
	// Position moves once the handler returned.
	deadline := time.Now().Add(10 * time.Second)
	for bob.EventsPosition() != inv.Seq {
		if time.Now().After(deadline) {
			t.Fatalf("events position %d, want %d", bob.EventsPosition(), inv.Seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := bob.StopEvents(); err != nil {
		t.Fatal(err)
	}
	if bob.EventsPosition() != 0 {
		t.Fatal("a position while not watching")
	}

	// Away, bob is removed; back from its last position, it learns it.
	if err := alice.Remove(room, bob.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := bob.WatchEvents(inv.Seq+1, r); err != nil {
		t.Fatal(err)
	}
	var removed eventJSON
	for removed.Type != "removed" {
		removed = r.next(t) // a rekey may come first
		if removed.Seq <= inv.Seq {
			t.Fatalf("event %+v delivered again", removed)
		}
	}
	if removed.RoomID != room || removed.By != alice.PublicKey() {
		t.Fatalf("removal %+v", removed)
	}
	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bob.WatchEvents(0, r); !errors.Is(err, mobile.ErrClosed) {
		t.Fatalf("WatchEvents after Close: %v", err)
	}
}
