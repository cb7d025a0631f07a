package router_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/router"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// timeout bounds every wait of a test: generous, because the machine is
// small and shared, but a hung router still fails the test.
const timeout = nodetest.RequestTimeout

// env is a complete node (embedded server, callout, services, router)
// with registered members connected through the callout.
type env struct {
	t    testing.TB
	node *node.Node
	logs *logBuffer
}

// newEnv starts a node; configure adjusts its configuration (the
// router's: node.Config.Router).
func newEnv(t testing.TB, configure ...func(*node.Config)) *env {
	t.Helper()
	e := &env{t: t, logs: &logBuffer{}}
	e.node = nodetest.Run(t, func(c *node.Config) {
		c.Store.Memory = true
		c.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		for _, f := range configure {
			f(c)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node log (nats-server lines aside):\n%s", e.logs.without("component=nats-server"))
		}
	})
	return e
}

// member is a registered user with its connection.
type member struct {
	*nodetest.Peer
	t    testing.TB
	name string
	// sealers are the member's frame makers, by room.
	mu      sync.Mutex
	sealers map[string]*e2e.Sealer
}

// user registers a user (with an encryption key, so that it may own and
// join encrypted rooms) and connects it.
func (e *env) user(name string) *member {
	e.t.Helper()
	id := nodetest.AddUser(e.t, e.node, name, false)
	m := &member{Peer: nodetest.Connect(e.t, e.node, id), t: e.t, name: name, sealers: map[string]*e2e.Sealer{}}
	key, err := e2e.GenerateEncryptionKey()
	if err != nil {
		e.t.Fatal(err)
	}
	issued := time.Now().Truncate(time.Second)
	pubKey := key.PublicKey()
	sig, err := subjects.SignEncKeyBinding(id.KeyPair(), pubKey, 1, issued)
	if err != nil {
		e.t.Fatal(err)
	}
	m.Call(subjects.UsersSetKey, subjects.SetKeyRequest{EncKey: pubKey, EncKeySig: sig, EncKeyVersion: 1, EncKeyIssuedAt: issued}, nil)
	return m
}

// room is a room with the room key of its epoch 1 (encrypted rooms).
type room struct {
	subjects.RoomInfo
	owner *member
	key   []byte
}

// room creates a room owned by owner in mode, with history ("" for the
// default, keep).
func (e *env) room(owner *member, mode, history string) *room {
	e.t.Helper()
	req := subjects.CreateRoomRequest{Mode: mode, History: history}
	r := &room{owner: owner}
	if mode == subjects.ModeE2E {
		req.RoomID, req.Salt = subjects.NewRoomID(owner.Pub(), mode)
		r.key = e2e.NewRoomKey()
		req.SealedKey = bytes.Repeat([]byte{1}, 1168) // opaque to the services
		g, err := e2e.SignGrant(owner.ID, req.RoomID, 1, owner.Pub(), r.key)
		if err != nil {
			e.t.Fatal(err)
		}
		req.Grant = g
	}
	owner.Call(subjects.RoomsCreate, req, &r.RoomInfo)
	return r
}

// invite makes the owner invite m to r (a proposal m has yet to accept).
func (e *env) invite(r *room, m *member) {
	e.t.Helper()
	req := subjects.InviteRequest{RoomID: r.RoomID, Pub: m.Pub()}
	if r.Mode == subjects.ModeE2E {
		req.Epoch, req.SealedKey = r.Epoch, bytes.Repeat([]byte{2}, 1168)
		g, err := e2e.SignGrant(r.owner.ID, r.RoomID, r.Epoch, m.Pub(), r.key)
		if err != nil {
			e.t.Fatal(err)
		}
		req.Grant = g
	}
	if err := subjects.SignOwner(r.owner.ID.KeyPair(), &req); err != nil {
		e.t.Fatal(err)
	}
	r.owner.Call(subjects.RoomsInvite, req, nil)
}

// join makes m a member of r: invited and accepted. It returns once the
// router's membership view has m, which follows the store a little behind
// it: a frame sent earlier may not be delivered to m (m reads it from the
// room log), and the tests that count deliveries want none missed.
func (e *env) join(r *room, m *member) {
	e.t.Helper()
	e.invite(r, m)
	m.Call(subjects.RoomsAccept, subjects.RoomRequest{RoomID: r.RoomID}, nil)
	e.visible(r, m)
}

// visible waits until the router's membership view has m in r.
func (e *env) visible(r *room, m *member) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !router.Visible(e.node.Router(), r.RoomID, m.Pub()) {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s joined room %s, but the router's view does not have it within %s", m.name, r.RoomID, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// remove makes the owner remove m from the cleartext room r.
func (e *env) remove(r *room, m *member) {
	e.t.Helper()
	req := subjects.RemoveRequest{RoomID: r.RoomID, Pub: m.Pub()}
	if err := subjects.SignOwner(r.owner.ID.KeyPair(), &req); err != nil {
		e.t.Fatal(err)
	}
	r.owner.Call(subjects.RoomsRemove, req, nil)
}

// frame seals a frame of m's in r.
func (m *member) frame(r *room, payload string) (e2e.Frame, []byte) {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sealers[r.RoomID]
	if !ok {
		cfg := e2e.SealerConfig{Identity: m.ID, Room: r.RoomID, Cleartext: r.Mode == subjects.ModeCleartext}
		if !cfg.Cleartext {
			g, err := e2e.SignGrant(r.owner.ID, r.RoomID, r.Epoch, m.Pub(), r.key)
			if err != nil {
				m.t.Fatal(err)
			}
			cfg.Epoch, cfg.RoomKey, cfg.Grant = r.Epoch, r.key, g
		}
		var err error
		if s, err = e2e.NewSealer(cfg); err != nil {
			m.t.Fatal(err)
		}
		m.sealers[r.RoomID] = s
	}
	f, wire, err := s.Seal(e2e.Message{Payload: []byte(payload)}, time.Now())
	if err != nil {
		m.t.Fatal(err)
	}
	return f, wire
}

// sendSubject is the subject m sends to r on.
func (m *member) sendSubject(roomID string) string {
	m.t.Helper()
	subject, err := subjects.Send(roomID, m.Pub())
	if err != nil {
		m.t.Fatal(err)
	}
	return subject
}

// send sends wire to roomID as an acknowledged send and returns the ack,
// or the refusal as a *subjects.Error.
func (m *member) send(roomID string, wire []byte) (subjects.SendAck, error) {
	m.t.Helper()
	r, err := m.sendMsg(roomID, wire)
	if err != nil {
		return subjects.SendAck{}, err
	}
	return decodeAck(m.t, r)
}

// sendMsg sends wire to roomID as an acknowledged send and returns the
// reply as it came.
func (m *member) sendMsg(roomID string, wire []byte) (*nats.Msg, error) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := m.Conn.RequestMsgWithContext(ctx, &nats.Msg{Subject: m.sendSubject(roomID), Data: wire})
	if err != nil {
		m.t.Fatalf("%s: send to %s: %v", m.name, roomID, err)
	}
	return r, nil
}

// decodeAck decodes a send's reply: a SendAck, or the refusal as a
// *subjects.Error.
func decodeAck(t testing.TB, r *nats.Msg) (subjects.SendAck, error) {
	t.Helper()
	if err := nodetest.ReplyError(r); err != nil {
		return subjects.SendAck{}, err
	}
	var ack subjects.SendAck
	dec := json.NewDecoder(bytes.NewReader(r.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ack); err != nil {
		t.Fatalf("decode ack %q: %v", r.Data, err)
	}
	return ack, nil
}

// mustSend sends a new frame of m's to r and returns it and its ack.
func (m *member) mustSend(r *room, payload string) (e2e.Frame, []byte, subjects.SendAck) {
	m.t.Helper()
	f, wire := m.frame(r, payload)
	ack, err := m.send(r.RoomID, wire)
	if err != nil {
		m.t.Fatalf("%s: send to %s: %v", m.name, r.RoomID, err)
	}
	if ack.ID != f.ID() || ack.Duplicate {
		m.t.Fatalf("%s: ack %+v of frame %s, want its ID and no duplicate", m.name, ack, f.ID())
	}
	return f, wire, ack
}

// wantRefused checks that err is a refusal with code whose message
// mentions want.
func wantRefused(t testing.TB, err error, code int, want string) {
	t.Helper()
	e, ok := err.(*subjects.Error)
	if !ok || e.Code != code {
		t.Fatalf("send: %v, want a refusal %d", err, code)
	}
	if want != "" && !bytes.Contains([]byte(e.Message), []byte(want)) {
		t.Errorf("refusal %d %q does not mention %q", e.Code, e.Message, want)
	}
}

// deliveries is a subscription to every delivery to one member.
type deliveries struct {
	t    testing.TB
	name string
	msgs chan *nats.Msg
}

// deliveries subscribes to every delivery to m (subjects.DeliverOf), in
// one subscription, so that deliveries of all rooms come in the order the
// router published them.
func (m *member) deliveries() *deliveries {
	m.t.Helper()
	all, err := subjects.DeliverOf(m.Pub())
	if err != nil {
		m.t.Fatal(err)
	}
	d := &deliveries{t: m.t, name: m.name, msgs: make(chan *nats.Msg, 4096)}
	sub, err := m.Conn.ChanSubscribe(all, d.msgs)
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := m.Conn.Flush(); err != nil {
		m.t.Fatal(err)
	}
	return d
}

// next returns the next delivery.
func (d *deliveries) next() *nats.Msg {
	d.t.Helper()
	select {
	case m := <-d.msgs:
		return m
	case <-time.After(timeout):
		d.t.Fatalf("%s: no delivery within %s", d.name, timeout)
		return nil
	}
}

// expect checks that the next delivery is wire in roomID with seq and
// prev.
func (d *deliveries) expect(roomID string, wire []byte, seq, prev uint64) {
	d.t.Helper()
	m := d.next()
	if _, gotRoom, err := subjects.ParseDeliver(m.Subject); err != nil || gotRoom != roomID {
		d.t.Fatalf("%s: delivery on %s (%v), want one for room %s", d.name, m.Subject, err, roomID)
	}
	gotSeq, gotPrev := m.Header.Get(subjects.HeaderSeq), m.Header.Get(subjects.HeaderPrev)
	if !bytes.Equal(m.Data, wire) {
		f, _ := e2e.Decode(m.Data)
		d.t.Fatalf("%s: delivered frame %s (seq %s), want the frame sent as seq %d", d.name, f.ID(), gotSeq, seq)
	}
	if gotSeq != strconv.FormatUint(seq, 10) || gotPrev != strconv.FormatUint(prev, 10) {
		d.t.Fatalf("%s: delivery with seq %q prev %q, want %d and %d", d.name, gotSeq, gotPrev, seq, prev)
	}
}

// stored returns r's frames in the room log, read as owner through the
// control plane (rooms.history).
func (e *env) stored(r *room) []subjects.StoredFrame {
	e.t.Helper()
	var out []subjects.StoredFrame
	req := subjects.HistoryRequest{RoomID: r.RoomID, Limit: subjects.MaxHistoryLimit}
	for {
		var page subjects.HistoryResponse
		r.owner.Call(subjects.RoomsHistory, req, &page)
		out = append(out, page.Frames...)
		if page.Next == 0 {
			return out
		}
		req.From = page.Next
	}
}

// logMessages counts the messages of r in the room log stream, as the
// store's own connection sees them.
func (e *env) logMessages(roomID string) uint64 {
	e.t.Helper()
	js, err := jetstream.New(e.node.StoreConn)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := js.Stream(ctx, kvstore.StreamRoomLog)
	if err != nil {
		e.t.Fatalf("stream %s: %v", kvstore.StreamRoomLog, err)
	}
	subject, err := subjects.Room(roomID)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		e.t.Fatalf("stream info: %v", err)
	}
	return info.State.Subjects[subject]
}

// stats returns the router's stats.
func (e *env) stats() router.StatsData { return e.node.Router().Stats() }

// noRateLimits turns off the services' and the router's rate limits.
func noRateLimits(c *node.Config) {
	c.Services.RateLimit = -1
	c.Router.SendRate = -1
}

// logBuffer collects log output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// without returns the log without the lines that contain drop.
func (l *logBuffer) without(drop string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b bytes.Buffer
	for _, line := range bytes.SplitAfter(l.buf.Bytes(), []byte("\n")) {
		if !bytes.Contains(line, []byte(drop)) {
			b.Write(line)
		}
	}
	return b.String()
}
