package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/router"
	"github.com/unibus/unibus/subjects"
)

// deliveryWait bounds the waits of the durable-delivery tests on a loaded
// machine.
const deliveryWait = 60 * time.Second

// recorder is a subscription's record: every message delivered, every
// rejection, in order.
type recorder struct {
	mu      sync.Mutex
	msgs    []client.Message
	rejects []error
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) handle(m client.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) reject(err error) {
	r.mu.Lock()
	r.rejects = append(r.rejects, err)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// snapshot returns copies of what was recorded so far.
func (r *recorder) snapshot() ([]client.Message, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.Message(nil), r.msgs...), append([]error(nil), r.rejects...)
}

// waitN waits until n messages were delivered and returns them.
func (r *recorder) waitN(t *testing.T, n int, within time.Duration) []client.Message {
	t.Helper()
	deadline := time.After(within)
	for {
		msgs, rejects := r.snapshot()
		if len(msgs) >= n {
			return msgs
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("%d of %d messages delivered within %s (rejections: %v)", len(msgs), n, within, rejects)
		}
	}
}

// quiet checks that nothing more is delivered for d and returns what was.
func (r *recorder) quiet(t *testing.T, d time.Duration) []client.Message {
	t.Helper()
	before, _ := r.snapshot()
	time.Sleep(d) // nothing to wait for: the test is that nothing happens
	after, rejects := r.snapshot()
	if len(after) != len(before) {
		t.Fatalf("%d more messages delivered: %+v", len(after)-len(before), after[len(before):])
	}
	if len(rejects) > 0 {
		t.Fatalf("rejections: %v", rejects)
	}
	return after
}

func (r *recorder) subscribe(t *testing.T, c *client.Conn, roomID string, opts ...client.SubscribeOption) *client.Subscription {
	t.Helper()
	sub, err := c.Subscribe(context.Background(), roomID, r.handle, r.reject, opts...)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return sub
}

// checkInOrder checks that msgs are exactly the payloads want, in order,
// once each, with ascending room-log sequences.
func checkInOrder(t *testing.T, msgs []client.Message, want []string) {
	t.Helper()
	if len(msgs) != len(want) {
		t.Fatalf("%d messages delivered, want %d", len(msgs), len(want))
	}
	var last uint64
	for i, m := range msgs {
		if string(m.Data) != want[i] {
			t.Fatalf("message %d is %q, want %q", i, m.Data, want[i])
		}
		if m.Seq <= last {
			t.Fatalf("message %d has seq %d after %d", i, m.Seq, last)
		}
		last = m.Seq
	}
}

// sharedRoom creates an encrypted room of owner with members (each
// invited and accepted).
func sharedRoom(t *testing.T, owner *client.Conn, members ...*client.Conn) subjects.RoomInfo {
	t.Helper()
	return roomWith(context.Background(), t, owner, "room", subjects.ModeE2E, members...)
}

// sendAll sends payloads one after the other, acknowledged, and returns
// the acknowledgements.
func sendAll(t *testing.T, c *client.Conn, roomID string, payloads []string) []client.Sent {
	t.Helper()
	out := make([]client.Sent, len(payloads))
	for i, p := range payloads {
		sent, err := c.Publish(context.Background(), roomID, []byte(p))
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		if sent.Seq == 0 || sent.Duplicate || (i > 0 && sent.Seq <= out[i-1].Seq) {
			t.Fatalf("publish %d acknowledged as %+v after %+v", i, sent, out[max(i-1, 0)])
		}
		out[i] = sent
	}
	return out
}

func payloads(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d", prefix, i)
	}
	return out
}

// TestOfflineBotCatchesUp: a bot that was offline while 1,000 frames were
// sent gets every one of them when it is back, resuming from where it
// stopped (FromSeq(Position()+1)): in order, once each.
func TestOfflineBotCatchesUp(t *testing.T) {
	b := newBus(t, unlimitedSends)
	alice, bot := b.peer(t, "alice"), b.peer(t, "bot")
	room := sharedRoom(t, alice, bot)
	botID := bot.Identity()

	first := newRecorder()
	sub := first.subscribe(t, bot, room.RoomID)
	sendAll(t, alice, room.RoomID, []string{"before"})
	checkInOrder(t, first.waitN(t, 1, deliveryWait), []string{"before"})
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	resume := sub.Position() + 1
	if err := bot.Close(); err != nil {
		t.Fatal(err)
	}

	want := payloads("while away", 1000)
	acks := sendAll(t, alice, room.RoomID, want)

	back := b.connect(t, botID)
	again := newRecorder()
	sub = again.subscribe(t, back, room.RoomID, client.FromSeq(resume))
	msgs := again.waitN(t, len(want), deliveryWait)
	checkInOrder(t, msgs, want)
	for i, m := range msgs {
		if m.ID != acks[i].ID || m.Seq != acks[i].Seq || m.Sender != alice.Identity().PublicKey() {
			t.Fatalf("message %d is %s seq %d from %s, want %+v", i, m.ID, m.Seq, m.Sender, acks[i])
		}
	}
	if got := sub.Position(); got != acks[len(acks)-1].Seq {
		t.Fatalf("position %d, want %d", got, acks[len(acks)-1].Seq)
	}
	// Live after the catch-up.
	sendAll(t, alice, room.RoomID, []string{"live"})
	checkInOrder(t, again.waitN(t, len(want)+1, deliveryWait), append(want, "live"))
	again.quiet(t, 300*time.Millisecond)
}

// kick disconnects c's connection on the server side, as an operator (or
// a failing network) would.
func kick(t *testing.T, b *bus, c *client.Conn) {
	t.Helper()
	ns := b.Node.Server.NATS()
	connz, err := ns.Connz(&server.ConnzOptions{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	name := c.Identity().PublicKey()[:8]
	for _, ci := range connz.Conns {
		if ci.Name == name {
			if err := ns.DisconnectClientByID(ci.Cid); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no connection named %s", name)
}

// waitReconnected waits until c reconnected more than before times.
func waitReconnected(t *testing.T, c *client.Conn, before uint64) {
	t.Helper()
	deadline := time.Now().Add(deliveryWait)
	for c.NATS().Stats().Reconnects <= before || !c.NATS().IsConnected() {
		if time.Now().After(deadline) {
			t.Fatal("no reconnect")
		}
		time.Sleep(10 * time.Millisecond) // polling the connection's state
	}
}

// TestSubscriptionAcrossReconnects: frames keep flowing while the
// subscriber's connection is dropped twice, by the server and by the
// client; the subscription loses nothing and duplicates nothing.
func TestSubscriptionAcrossReconnects(t *testing.T) {
	b := newBus(t, unlimitedSends)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := sharedRoom(t, alice, bob)
	rec := newRecorder()
	rec.subscribe(t, bob, room.RoomID)

	want := payloads("flowing", 600)
	done := make(chan []client.Sent, 1)
	go func() { done <- sendAll(t, alice, room.RoomID, want) }()

	rec.waitN(t, 100, deliveryWait)
	before := bob.NATS().Stats().Reconnects
	kick(t, b, bob)
	waitReconnected(t, bob, before)
	rec.waitN(t, 300, deliveryWait)
	before = bob.NATS().Stats().Reconnects
	if err := bob.NATS().ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	waitReconnected(t, bob, before)
	<-done
	checkInOrder(t, rec.waitN(t, len(want), deliveryWait), want)
	rec.quiet(t, 300*time.Millisecond)
}

// TestStartPoints: each start point reads the log first, then goes on
// live.
func TestStartPoints(t *testing.T) {
	ctx := context.Background()
	b := newBus(t, unlimitedSends)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := sharedRoom(t, alice, bob)
	early := payloads("early", 5)
	earlyAcks := sendAll(t, alice, room.RoomID, early)
	time.Sleep(20 * time.Millisecond) // the log's clock must move on between the two halves
	since := time.Now()
	late := payloads("late", 5)
	lateAcks := sendAll(t, alice, room.RoomID, late)
	// Every frame of the room so far, and the last one's sequence: each
	// case adds one.
	all := append(append([]string(nil), early...), late...)
	lastSeq := lateAcks[4].Seq

	// Options and expectations are read when each case runs: the cases
	// before it added to the room.
	type lazy = func() []client.SubscribeOption
	opts := func(o ...client.SubscribeOption) lazy { return func() []client.SubscribeOption { return o } }
	tests := []struct {
		name string
		opts lazy
		want func() []string
	}{
		{"default", opts(), nil},
		{"NewOnly", opts(client.NewOnly()), nil},
		{"FromSeq 0", opts(client.FromSeq(0)), func() []string { return all }},
		{"FromSeq 1", opts(client.FromSeq(1)), func() []string { return all }},
		{"FromSeq third", opts(client.FromSeq(earlyAcks[2].Seq)), func() []string { return all[2:] }},
		{"FromSeq after the end", func() []client.SubscribeOption { return []client.SubscribeOption{client.FromSeq(lastSeq + 1)} }, nil},
		{"Since", opts(client.Since(since)), func() []string { return all[len(early):] }},
		{"Since the future", opts(client.Since(time.Now().Add(time.Hour))), nil},
		{"Last 3", opts(client.Last(3)), func() []string { return all[len(all)-3:] }},
		{"Last 0", opts(client.Last(0)), nil},
		{"Last more than stored", opts(client.Last(100)), func() []string { return all }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			if tt.want != nil {
				want = append(want, tt.want()...)
			}
			rec := newRecorder()
			sub := rec.subscribe(t, bob, room.RoomID, tt.opts()...)
			if len(want) > 0 {
				rec.waitN(t, len(want), deliveryWait)
			}
			live := fmt.Sprintf("live %d", i)
			sent, err := alice.Publish(ctx, room.RoomID, []byte(live))
			if err != nil {
				t.Fatal(err)
			}
			all, lastSeq = append(all, live), sent.Seq
			want = append(want, live)
			checkInOrder(t, rec.waitN(t, len(want), deliveryWait), want)
			msgs := rec.quiet(t, 200*time.Millisecond)
			if sub.Position() != sent.Seq || msgs[len(msgs)-1].Seq != sent.Seq {
				t.Fatalf("position %d, last delivered %d, want %d", sub.Position(), msgs[len(msgs)-1].Seq, sent.Seq)
			}
		})
	}
}

// roomSealer returns a sealer of c's frames in a room, made outside the
// client (with c's room key, opened with its encryption key, and its
// grant): frames the tests store and deliver themselves.
func roomSealer(t *testing.T, b *bus, c *client.Conn, roomID string) *e2e.Sealer {
	t.Helper()
	resp, err := c.RoomKey(context.Background(), roomID, 0)
	if err != nil {
		t.Fatal(err)
	}
	key, err := e2e.OpenRoomKey(b.encKey(t, c.Identity()), roomID, resp.Epoch, c.Identity().PublicKey(), resp.SealedKey)
	if err != nil {
		t.Fatal(err)
	}
	return sealerOf(t, c.Identity(), roomID, resp.Epoch, key, resp.Grant)
}

// TestGapFilledFromTheLog: deliveries that do not follow the last one (a
// frame stored but never delivered, two deliveries out of order, a
// duplicate, a frame the log holds twice) are put right from the log: the
// subscriber delivers every frame once, in log order.
func TestGapFilledFromTheLog(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob, carol := b.peer(t, "alice"), b.peer(t, "bob"), b.peer(t, "carol")
	room := sharedRoom(t, alice, bob, carol)
	rec := newRecorder()
	sub := rec.subscribe(t, bob, room.RoomID)

	// Carol's frames, stored straight into the log (no delivery) and
	// delivered by hand as the router would.
	s := roomSealer(t, b, carol, room.RoomID)
	store := func(data string) loggedFrame {
		t.Helper()
		f, wire, err := s.Seal(e2e.Message{Payload: []byte(data)}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return storeAs(t, b, room.RoomID, f.ID(), wire)
	}
	deliver := func(f loggedFrame) {
		t.Helper()
		subject, err := subjects.Deliver(bob.Identity().PublicKey(), room.RoomID)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(subject)
		m.Header.Set(subjects.HeaderSeq, strconv.FormatUint(f.seq, 10))
		m.Header.Set(subjects.HeaderPrev, strconv.FormatUint(f.prev, 10))
		m.Data = f.wire
		if err := b.Node.RouterConn.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	var frames []loggedFrame
	for i := range 4 {
		frames = append(frames, store(fmt.Sprintf("f%d", i+1)))
	}
	// Only the fourth is delivered: the first three are read from the log.
	deliver(frames[3])
	checkInOrder(t, rec.waitN(t, 4, deliveryWait), []string{"f1", "f2", "f3", "f4"})

	// Two out of order, and duplicates.
	frames = append(frames, store("f5"), store("f6"))
	deliver(frames[5])
	deliver(frames[4])
	deliver(frames[3])
	deliver(frames[5])
	checkInOrder(t, rec.waitN(t, 6, deliveryWait), []string{"f1", "f2", "f3", "f4", "f5", "f6"})

	// The log holds f2 a second time, under another sequence (another
	// ID for the log's deduplication): delivered once all the same.
	frames = append(frames, storeAs(t, b, room.RoomID, "copy-of-f2", frames[1].wire), store("f8"))
	deliver(frames[7])
	checkInOrder(t, rec.waitN(t, 7, deliveryWait), []string{"f1", "f2", "f3", "f4", "f5", "f6", "f8"})
	rec.quiet(t, 300*time.Millisecond)
	if got := sub.Position(); got != frames[7].seq {
		t.Fatalf("position %d, want %d", got, frames[7].seq)
	}

	// A frame alice sends the ordinary way follows.
	sent, err := alice.Publish(ctx, room.RoomID, []byte("f9"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := rec.waitN(t, 8, deliveryWait)
	if m := msgs[7]; m.ID != sent.ID || m.Seq != sent.Seq {
		t.Fatalf("delivered %+v, want %+v", m, sent)
	}
}

// loggedFrame is a frame a test stored in the room log itself.
type loggedFrame struct {
	wire      []byte
	seq, prev uint64
}

// storeAs appends wire to the room log under frame ID id, as the router
// does, and returns where it landed.
func storeAs(t *testing.T, b *bus, roomID, id string, wire []byte) loggedFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deliveryWait)
	defer cancel()
	for {
		a, err := b.Node.Store.AppendFrame(ctx, roomID, id, wire, 0)
		if err == nil {
			return loggedFrame{wire, a.Seq, a.Prev}
		}
		if ctx.Err() != nil {
			t.Fatalf("append: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // a transient JetStream error: retry
	}
}

// TestHistoryPages: History reads the log forward and backward, page by
// page; a member sees only what was stored since its invitation, and a
// removed member is refused.
func TestHistoryPages(t *testing.T) {
	ctx := context.Background()
	b := newBus(t, unlimitedSends)
	alice, bob, carol := b.peer(t, "alice"), b.peer(t, "bob"), b.peer(t, "carol")
	room := sharedRoom(t, alice, bob)
	want := payloads("m", 25)
	acks := sendAll(t, alice, room.RoomID, want)

	// Forward, 10 at a time.
	var got []client.Message
	for from := uint64(0); ; {
		page, err := bob.History(ctx, room.RoomID, client.HistoryQuery{From: from, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Rejected) > 0 || len(page.Messages) > 10 || page.LastSeq != acks[24].Seq {
			t.Fatalf("page from %d: %d messages, rejected %v, last seq %d", from, len(page.Messages), page.Rejected, page.LastSeq)
		}
		got = append(got, page.Messages...)
		if page.Next == 0 {
			break
		}
		from = page.Next
	}
	checkInOrder(t, got, want)

	// Backward from the end, 10 at a time.
	var back []client.Message
	for before := uint64(0); ; {
		page, err := bob.History(ctx, room.RoomID, client.HistoryQuery{Last: 10, Before: before})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Messages) == 0 {
			break
		}
		back = append(page.Messages, back...)
		before = page.Messages[0].Seq
	}
	checkInOrder(t, back, want)

	// Until bounds a forward page.
	page, err := bob.History(ctx, room.RoomID, client.HistoryQuery{From: acks[3].Seq, Until: acks[5].Seq})
	if err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, page.Messages, want[3:6])

	// Carol, invited now, sees nothing from before her invitation.
	if _, err := alice.Invite(ctx, room.RoomID, carol.Identity().PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := carol.Accept(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	page, err = carol.History(ctx, room.RoomID, client.HistoryQuery{})
	if err != nil || len(page.Messages) != 0 || len(page.Rejected) != 0 || page.FirstSeq <= acks[24].Seq {
		t.Fatalf("carol's history before anything new: %+v, %v", page, err)
	}
	page, err = carol.History(ctx, room.RoomID, client.HistoryQuery{Last: 100})
	if err != nil || len(page.Messages) != 0 {
		t.Fatalf("carol's last 100 before anything new: %+v, %v", page, err)
	}
	after := sendAll(t, alice, room.RoomID, []string{"for carol too"})
	page, err = carol.History(ctx, room.RoomID, client.HistoryQuery{})
	if err != nil {
		t.Fatal(err)
	}
	checkInOrder(t, page.Messages, []string{"for carol too"})
	if page.Messages[0].Seq != after[0].Seq {
		t.Fatalf("carol read seq %d, want %d", page.Messages[0].Seq, after[0].Seq)
	}
	// Nor does her subscription from the start.
	rec := newRecorder()
	rec.subscribe(t, carol, room.RoomID, client.FromSeq(1))
	checkInOrder(t, rec.waitN(t, 1, deliveryWait), []string{"for carol too"})

	// Bob, removed, reads nothing at all.
	if _, err := alice.Remove(ctx, room.RoomID, bob.Identity().PublicKey()); err != nil {
		t.Fatal(err)
	}
	if page, err := bob.History(ctx, room.RoomID, client.HistoryQuery{}); !errors.Is(err, client.ErrForbidden) && !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("removed member's history = %d messages, %v; want ErrForbidden", len(page.Messages), err)
	}
	if _, err := bob.Subscribe(ctx, room.RoomID, func(client.Message) {}, nil, client.FromSeq(1)); err == nil {
		t.Fatal("removed member subscribed from the start")
	}

	// A member reads frames of an earlier epoch after the rekey.
	page, err = carol.History(ctx, room.RoomID, client.HistoryQuery{})
	if err != nil || len(page.Messages) != 1 || page.Messages[0].Epoch != room.Epoch || len(page.Rejected) > 0 {
		t.Fatalf("carol's history after a rekey: %+v, %v", page, err)
	}
}

// TestRoomLogHoldsNoPlaintext: whoever reads the room log stream itself
// (the store's credentials) finds sealed frames, no plaintext.
func TestRoomLogHoldsNoPlaintext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), deliveryWait)
	defer cancel()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := sharedRoom(t, alice, bob)
	secret := "the launch code is 0000"
	acks := sendAll(t, alice, room.RoomID, []string{secret, secret + " again"})

	js, err := jetstream.New(b.Node.StoreConn)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, kvstore.StreamRoomLog)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, a := range acks {
		m, err := stream.GetMsg(ctx, a.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != room.Subject {
			t.Fatalf("stored at %s, want %s", m.Subject, room.Subject)
		}
		if bytes.Contains(m.Data, []byte("launch")) || bytes.Contains(m.Data, []byte(secret)) {
			t.Fatalf("plaintext in the room log: %s", m.Data)
		}
		f, err := e2e.Decode(m.Data)
		if err != nil || f.Clear || len(f.Nonce) == 0 || f.ID() != a.ID {
			t.Fatalf("stored frame %+v, %v; want the sealed frame %s", f, err, a.ID)
		}
		found++
	}
	if found != len(acks) {
		t.Fatalf("%d frames found", found)
	}
}

// TestPublishAcknowledged: the acknowledged path and its refusals; NoAck.
func TestPublishAcknowledged(t *testing.T) {
	ctx := context.Background()
	b := newBus(t, func(c *node.Config) { c.Router.MaxFrameBytes = 8 << 10 })
	alice, bob, mallory := b.peer(t, "alice"), b.peer(t, "bob"), b.peer(t, "mallory")
	room := sharedRoom(t, alice, bob)
	rec := newRecorder()
	rec.subscribe(t, bob, room.RoomID)

	sent, err := alice.Publish(ctx, room.RoomID, []byte("acked"))
	if err != nil || sent.Seq == 0 || sent.Duplicate || sent.ID == "" {
		t.Fatalf("acked publish = %+v, %v", sent, err)
	}
	quick, err := alice.Publish(ctx, room.RoomID, []byte("no ack"), client.NoAck())
	if err != nil || quick.Seq != 0 || quick.ID == "" {
		t.Fatalf("NoAck publish = %+v, %v", quick, err)
	}
	msgs := rec.waitN(t, 2, deliveryWait)
	checkInOrder(t, msgs, []string{"acked", "no ack"})
	if msgs[1].ID != quick.ID {
		t.Fatalf("NoAck frame delivered as %s, sent %s", msgs[1].ID, quick.ID)
	}

	// Over the router's limit: 413.
	if _, err := alice.Publish(ctx, room.RoomID, make([]byte, 16<<10)); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("oversized publish = %v, want ErrTooLarge", err)
	}
	// Over e2e's limit: refused before sending.
	if _, err := alice.Publish(ctx, room.RoomID, make([]byte, e2e.MaxPayloadSize+1)); !errors.Is(err, e2e.ErrFrameTooLarge) {
		t.Fatalf("payload over the frame limit = %v, want ErrFrameTooLarge", err)
	}
	// A non-member's frame, sent raw (its client refuses before that):
	// 403, and nothing delivered.
	resp, err := mallory.NATS().Request(sendSubject(t, mallory, room.RoomID), []byte("{}"), 10*time.Second)
	if err != nil || resp.Header.Get("Nats-Service-Error-Code") != "403" {
		t.Fatalf("non-member send: %v, %v; want 403", resp, err)
	}
	if _, err := mallory.Publish(ctx, room.RoomID, []byte("let me in")); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("non-member publish = %v, want ErrForbidden", err)
	}
	// A deadline that passes while the router is away: the send is given
	// up, with the context's error.
	short, cancel := context.WithTimeout(ctx, time.Nanosecond)
	defer cancel()
	<-short.Done()
	if _, err := alice.Publish(short, room.RoomID, []byte("too late")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish past its deadline = %v, want DeadlineExceeded", err)
	}
	rec.quiet(t, 300*time.Millisecond)
}

// TestHistoryNoneRoom: a room that keeps no history delivers live frames
// with no sequence, and has no log to read.
func TestHistoryNoneRoom(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room, err := alice.CreateRoom(ctx, "ephemeral", subjects.ModeE2E, client.WithHistory(subjects.HistoryNone))
	if err != nil {
		t.Fatal(err)
	}
	if room.History != subjects.HistoryNone {
		t.Fatalf("room history %q", room.History)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bob.Identity().PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Accept(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Publish(ctx, room.RoomID, []byte("unseen")); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	sub := rec.subscribe(t, bob, room.RoomID, client.FromSeq(1))
	sent, err := alice.Publish(ctx, room.RoomID, []byte("seen"))
	if err != nil || sent.Seq != 0 {
		t.Fatalf("publish = %+v, %v; want no sequence", sent, err)
	}
	msgs := rec.waitN(t, 1, deliveryWait)
	if string(msgs[0].Data) != "seen" || msgs[0].Seq != 0 || msgs[0].ID != sent.ID {
		t.Fatalf("delivered %+v", msgs[0])
	}
	rec.quiet(t, 300*time.Millisecond)
	if sub.Position() != 0 {
		t.Fatalf("position %d", sub.Position())
	}
}

// TestEventsWhileOffline: a user offline when it is invited finds the
// invitation among its events when it is back; live events follow, in
// order, once each.
func TestEventsWhileOffline(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	bobID := bob.Identity()

	var mu sync.Mutex
	var events []subjects.Event
	got := make(chan struct{}, 16)
	handle := func(e subjects.Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
		got <- struct{}{}
	}
	waitEvents := func(n int) []subjects.Event {
		t.Helper()
		deadline := time.After(deliveryWait)
		for {
			mu.Lock()
			out := append([]subjects.Event(nil), events...)
			mu.Unlock()
			if len(out) >= n {
				return out
			}
			select {
			case <-got:
			case <-deadline:
				t.Fatalf("%d of %d events within %s: %+v", len(out), n, deliveryWait, out)
			}
		}
	}

	es, err := bob.Events(ctx, 0, handle)
	if err != nil {
		t.Fatal(err)
	}
	start := es.Position()
	if err := es.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := bob.Close(); err != nil {
		t.Fatal(err)
	}

	room, err := alice.CreateRoom(ctx, "while away", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bobID.PublicKey()); err != nil {
		t.Fatal(err)
	}

	back := b.connect(t, bobID)
	es, err = back.Events(ctx, start+1, handle)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = es.Stop() }()
	first := waitEvents(1)[0]
	if first.Type != subjects.EventInvited || first.RoomID != room.RoomID || first.By != alice.Identity().PublicKey() || first.Seq <= start {
		t.Fatalf("first event %+v, want the invitation to %s by alice after %d", first, room.RoomID, start)
	}
	// Live: another invitation reaches it through the doorbell.
	room2, err := alice.CreateRoom(ctx, "live", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room2.RoomID, bobID.PublicKey()); err != nil {
		t.Fatal(err)
	}
	all := waitEvents(2)
	if e := all[1]; e.Type != subjects.EventInvited || e.RoomID != room2.RoomID || e.Seq <= first.Seq {
		t.Fatalf("second event %+v", e)
	}
	if es.Position() != all[1].Seq {
		t.Fatalf("position %d, want %d", es.Position(), all[1].Seq)
	}
	// Across a reconnect, nothing twice.
	before := back.NATS().Stats().Reconnects
	kick(t, b, back)
	waitReconnected(t, back, before)
	if _, err := alice.Remove(ctx, room2.RoomID, bobID.PublicKey()); err != nil {
		t.Fatal(err)
	}
	all = waitEvents(3)
	if e := all[2]; e.Type != subjects.EventRemoved || e.RoomID != room2.RoomID {
		t.Fatalf("third event %+v", e)
	}
	time.Sleep(300 * time.Millisecond) // nothing to wait for: nothing more may come
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 3 {
		t.Fatalf("%d events delivered: %+v", len(events), events)
	}
}

// TestPublishRetriedUntilARouterIsBack: an acknowledged send finds no
// routing service and keeps sending the same frame until one is back; the
// frame is stored and delivered once. A send whose deadline passes first
// fails with ErrUnavailable.
func TestPublishRetriedUntilARouterIsBack(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := sharedRoom(t, alice, bob)
	rec := newRecorder()
	rec.subscribe(t, bob, room.RoomID)
	if err := b.Node.Router().Stop(); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := alice.Publish(short, room.RoomID, []byte("given up")); !errors.Is(err, client.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish without a router = %v, want ErrUnavailable", err)
	}

	type result struct {
		sent client.Sent
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, deliveryWait)
		defer cancel()
		sent, err := alice.Publish(ctx, room.RoomID, []byte("while away"))
		done <- result{sent, err}
	}()
	time.Sleep(500 * time.Millisecond) // nothing to wait for: the send keeps trying meanwhile
	select {
	case r := <-done:
		t.Fatalf("publish returned without a router: %+v, %v", r.sent, r.err)
	default:
	}
	conn, err := b.Node.RouterUserConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	r2, err := router.Start(ctx, router.Config{Conn: conn, Store: b.Node.Store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r2.Stop() })
	r := <-done
	if r.err != nil || r.sent.Seq == 0 {
		t.Fatalf("publish after the router came back = %+v, %v", r.sent, r.err)
	}
	msgs := rec.waitN(t, 1, deliveryWait)
	if string(msgs[0].Data) != "while away" || msgs[0].Seq != r.sent.Seq {
		t.Fatalf("delivered %+v, want %+v", msgs[0], r.sent)
	}
	rec.quiet(t, 300*time.Millisecond)
}
