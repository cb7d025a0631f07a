package router_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
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
)

// TestSendStoresAndDelivers: an acknowledged send is stored once, as
// sent, and delivered to every member, the sender included, with
// sequences that chain; a non-member receives nothing.
func TestSendStoresAndDelivers(t *testing.T) {
	for _, mode := range []string{subjects.ModeCleartext, subjects.ModeE2E} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			alice, bob, carol, dave := e.user("alice"), e.user("bob"), e.user("carol"), e.user("dave")
			r := e.room(alice, mode, "")
			if r.History != subjects.HistoryKeep {
				t.Fatalf("a new room's history is %q, want %q by default", r.History, subjects.HistoryKeep)
			}
			e.join(r, bob)
			e.join(r, carol)
			// dave is a member of another room only: the barrier that shows
			// he got nothing of r (one router connection publishes every
			// delivery, in order).
			other := e.room(dave, subjects.ModeCleartext, "")
			ds := map[*member]*deliveries{alice: alice.deliveries(), bob: bob.deliveries(), carol: carol.deliveries()}
			daves := dave.deliveries()

			type sent struct {
				wire []byte
				ack  subjects.SendAck
			}
			var all []sent
			for i, from := range []*member{alice, bob, carol, alice} {
				_, wire, ack := from.mustSend(r, "hello "+string(rune('a'+i)))
				if ack.Seq == 0 {
					t.Fatalf("ack %+v: want a sequence in a room that keeps history", ack)
				}
				if n := len(all); n > 0 && ack.Seq <= all[n-1].ack.Seq {
					t.Fatalf("seq %d after %d: want increasing sequences", ack.Seq, all[n-1].ack.Seq)
				}
				all = append(all, sent{wire, ack})
			}
			for _, d := range ds {
				var prev uint64
				for _, s := range all {
					d.expect(r.RoomID, s.wire, s.ack.Seq, prev)
					prev = s.ack.Seq
				}
			}
			_, barrier, barrierAck := dave.mustSend(other, "barrier")
			daves.expect(other.RoomID, barrier, barrierAck.Seq, 0)

			stored := e.stored(r)
			if len(stored) != len(all) {
				t.Fatalf("%d frames stored, want %d", len(stored), len(all))
			}
			var prev uint64
			for i, f := range stored {
				if f.Seq != all[i].ack.Seq || f.Prev != prev || !bytes.Equal(f.Frame, all[i].wire) {
					t.Errorf("stored frame %d: seq %d prev %d (%d bytes), want seq %d prev %d and the bytes sent", i, f.Seq, f.Prev, len(f.Frame), all[i].ack.Seq, prev)
				}
				prev = f.Seq
			}
			st := e.stats()
			if st.Stored != 5 || st.Sent != 5 || st.Delivered != 3*4+1 || st.Duplicates != 0 || st.Misdirected != 0 || len(st.Refused) != 0 {
				t.Errorf("stats %+v: want 5 stored and sent, 13 delivered, nothing refused", st)
			}
		})
	}
}

// TestFireAndForget: a send without a reply subject is handled the same
// way, without an ack.
func TestFireAndForget(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	r := e.room(alice, subjects.ModeCleartext, "")
	e.join(r, bob)
	d := bob.deliveries()
	_, wire := alice.frame(r, "no ack")
	if err := alice.Conn.Publish(alice.sendSubject(r.RoomID), wire); err != nil {
		t.Fatal(err)
	}
	m := d.next()
	if seq, err := strconv.ParseUint(m.Header.Get(subjects.HeaderSeq), 10, 64); !bytes.Equal(m.Data, wire) || err != nil || seq == 0 || m.Header.Get(subjects.HeaderPrev) != "0" {
		t.Fatalf("delivery %q seq %q prev %q, want the frame with a sequence, first of the room", m.Data, m.Header.Get(subjects.HeaderSeq), m.Header.Get(subjects.HeaderPrev))
	}
	if got := e.stored(r); len(got) != 1 || !bytes.Equal(got[0].Frame, wire) {
		t.Fatalf("stored %d frames, want the one sent", len(got))
	}
}

// TestSendRefused: what the router refuses is neither stored nor
// delivered, and the sender is told why.
func TestSendRefused(t *testing.T) {
	e := newEnv(t)
	alice, bob, carol, mallory := e.user("alice"), e.user("bob"), e.user("carol"), e.user("mallory")
	r := e.room(alice, subjects.ModeE2E, "")
	clear := e.room(alice, subjects.ModeCleartext, "")
	e.join(r, bob)
	e.join(clear, bob)
	e.invite(r, carol) // not accepted: not a member
	d := bob.deliveries()

	_, alicesWire := alice.frame(r, "alice's")
	_, clearWire := alice.frame(clear, "cleartext")
	_, good := bob.frame(r, "bob's")
	var fields map[string]any
	if err := json.Unmarshal(good, &fields); err != nil {
		t.Fatal(err)
	}
	fields["sig"] = "c2hvcnQ=" // a signature of 5 bytes
	tampered, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	_, carolsWire := carol.frame(r, "carol's")
	_, mallorysWire := mallory.frame(r, "mallory's")
	nobody := subjects.RoomIDFor(alice.Pub(), subjects.ModeCleartext, bytes.Repeat([]byte{7}, subjects.RoomSaltLen))
	_, nowhere := alice.frame(&room{RoomInfo: subjects.RoomInfo{RoomID: nobody, Mode: subjects.ModeCleartext}}, "nowhere")

	for _, tc := range []struct {
		name   string
		from   *member
		roomID string
		wire   []byte
		code   int
		want   string
	}{
		{"non-member", mallory, r.RoomID, mallorysWire, subjects.CodeForbidden, "is not a member of room"},
		{"invitee not yet accepted", carol, r.RoomID, carolsWire, subjects.CodeForbidden, "is not a member of room"},
		{"no such room", alice, nobody, nowhere, subjects.CodeNotFound, "room " + nobody + " not found"},
		{"someone else's frame", bob, r.RoomID, alicesWire, subjects.CodeBadRequest, "the frame's sender is " + alice.Pub()},
		{"a frame of another room", bob, r.RoomID, clearWire, subjects.CodeBadRequest, "the frame is for room " + clear.RoomID},
		{"cleartext in an encrypted room", alice, r.RoomID, mustReroom(t, alice, clear, r.RoomID), subjects.CodeBadRequest, "is encrypted"},
		{"a frame that is not well formed", bob, r.RoomID, tampered, subjects.CodeBadRequest, "not a frame"},
		{"not a frame", bob, r.RoomID, []byte(`{"hello":"world"}`), subjects.CodeBadRequest, "not a frame"},
		{"empty", bob, r.RoomID, nil, subjects.CodeBadRequest, "not a frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.from.send(tc.roomID, tc.wire)
			wantRefused(t, err, tc.code, tc.want)
		})
	}
	if n := e.logMessages(r.RoomID); n != 0 {
		t.Errorf("%d frames stored after refusals only, want none", n)
	}
	// The barrier: bob's next delivery is the frame sent after them all.
	_, ack := sendAndAck(t, bob, r, good)
	d.expect(r.RoomID, good, ack.Seq, 0)
	st := e.stats()
	for code, want := range map[string]int64{"400": 6, "403": 2, "404": 1} {
		if st.Refused[code] != want {
			t.Errorf("refused %s: %d, want %d (stats %+v)", code, st.Refused[code], want, st)
		}
	}
}

// mustReroom re-signs a cleartext frame of m's for another room.
func mustReroom(t testing.TB, m *member, r *room, roomID string) []byte {
	t.Helper()
	other := *r
	other.RoomID = roomID
	fresh := &member{Peer: m.Peer, t: t, name: m.name, sealers: map[string]*e2e.Sealer{}}
	_, wire := fresh.frame(&other, "cleartext here")
	return wire
}

// sendAndAck sends wire and requires an ack.
func sendAndAck(t testing.TB, m *member, r *room, wire []byte) (e2e.Frame, subjects.SendAck) {
	t.Helper()
	ack, err := m.send(r.RoomID, wire)
	if err != nil {
		t.Fatalf("%s: send: %v", m.name, err)
	}
	f, err := e2e.Decode(wire)
	if err != nil {
		t.Fatal(err)
	}
	return f, ack
}

// TestSizeAndRateLimits: a frame over the router's limit is 413, a member
// over its send rate 429 with a retry hint; neither is stored.
func TestSizeAndRateLimits(t *testing.T) {
	e := newEnv(t, func(c *node.Config) {
		c.Router.MaxFrameBytes = 4 << 10
		c.Router.SendRate, c.Router.SendBurst = 0.5, 3
	})
	alice := e.user("alice")
	r := e.room(alice, subjects.ModeCleartext, "")

	_, big := alice.frame(r, strings.Repeat("x", 5<<10))
	_, err := alice.send(r.RoomID, big)
	wantRefused(t, err, subjects.CodeTooLarge, "over the router's limit of 4096")
	if n := e.logMessages(r.RoomID); n != 0 {
		t.Fatalf("the oversized frame was stored (%d)", n)
	}
	// The oversized send was not charged: the burst of 3 is whole.
	for i := range 3 {
		alice.mustSend(r, "within the burst "+string(rune('0'+i)))
	}
	_, over := alice.frame(r, "over the rate")
	reply, _ := alice.sendMsg(r.RoomID, over)
	_, err = decodeAck(t, reply)
	wantRefused(t, err, subjects.CodeTooManyRequests, "too many frames from "+alice.Pub())
	if h := reply.Header.Get(subjects.HeaderRetryAfter); h == "" || h == "0" {
		t.Errorf("a 429 without a retry hint (%s: %q)", subjects.HeaderRetryAfter, h)
	}
	if n := e.logMessages(r.RoomID); n != 3 {
		t.Errorf("%d frames stored, want the 3 within the burst", n)
	}
}

// TestRemovedMemberRefusedAtOnce: a member removed from a room is refused
// within a second of its removal, without a reconnect.
func TestRemovedMemberRefusedAtOnce(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	r := e.room(alice, subjects.ModeCleartext, "")
	e.join(r, bob)
	bob.mustSend(r, "while a member")
	e.remove(r, bob)
	removed := time.Now()
	for {
		_, wire := bob.frame(r, "after removal")
		_, err := bob.send(r.RoomID, wire)
		if errors.Is(err, subjects.ErrForbidden) {
			break
		}
		if time.Since(removed) > raceSlowdown*time.Second {
			t.Fatalf("the removed member's send is still accepted %s after the removal (%v)", time.Since(removed), err)
		}
	}
	t.Logf("refused %s after the removal", time.Since(removed).Round(time.Millisecond))
	for _, m := range []*member{alice, bob} {
		if n := m.Disconnects(); n != 0 {
			t.Errorf("%s was disconnected %d times: a membership change must not kick", m.name, n)
		}
	}
	// Whatever the removed member sent meanwhile was accepted before the
	// removal reached the router; after it, nothing more is stored.
	n := e.logMessages(r.RoomID)
	_, wire := bob.frame(r, "still refused")
	_, err := bob.send(r.RoomID, wire)
	wantRefused(t, err, subjects.CodeForbidden, "")
	if after := e.logMessages(r.RoomID); after != n {
		t.Errorf("a refused send was stored (%d → %d)", n, after)
	}
}

// TestHistoryNone: a room that keeps no history stores nothing and
// delivers with sequence 0.
func TestHistoryNone(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	r := e.room(alice, subjects.ModeCleartext, subjects.HistoryNone)
	e.join(r, bob)
	d := bob.deliveries()
	for range 2 {
		_, wire, ack := alice.mustSend(r, "ephemeral")
		if ack.Seq != 0 {
			t.Fatalf("ack %+v, want seq 0 in a room without history", ack)
		}
		d.expect(r.RoomID, wire, 0, 0)
	}
	if n := e.logMessages(r.RoomID); n != 0 {
		t.Errorf("%d frames stored in a room without history", n)
	}
	if got := e.stored(r); len(got) != 0 {
		t.Errorf("history of a room without history: %d frames", len(got))
	}
	if st := e.stats(); st.Stored != 0 || st.Sent != 2 || st.Delivered != 4 {
		t.Errorf("stats %+v: want nothing stored, 2 sent, 4 delivered", st)
	}
}

// TestDuplicateSend: a frame sent twice (a retry) is stored once; the
// second ack says so, with the first copy's sequence, and the frame is
// delivered again under that sequence.
func TestDuplicateSend(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	r := e.room(alice, subjects.ModeE2E, "")
	e.join(r, bob)
	d := bob.deliveries()
	_, wire, first := alice.mustSend(r, "once")
	again, err := alice.send(r.RoomID, wire)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Seq != first.Seq || again.ID != first.ID {
		t.Fatalf("second ack %+v, want a duplicate of %+v", again, first)
	}
	_, next, nextAck := alice.mustSend(r, "twice")
	// The duplicate is delivered again under the first copy's sequence
	// (with no known predecessor), for a member that missed the first
	// delivery; one that has it drops it by sequence.
	d.expect(r.RoomID, wire, first.Seq, 0)
	d.expect(r.RoomID, wire, first.Seq, 0)
	d.expect(r.RoomID, next, nextAck.Seq, first.Seq)
	if got := e.stored(r); len(got) != 2 {
		t.Errorf("%d frames stored, want 2", len(got))
	}
	if st := e.stats(); st.Duplicates != 1 || st.Stored != 2 || st.Delivered != 6 {
		t.Errorf("stats %+v: want 1 duplicate, 2 stored, 6 delivered", st)
	}
}

// TestMisdirectedReplies: a send whose reply subject is another user's
// inbox, or a bucket, is dropped: nothing stored, delivered or answered.
func TestMisdirectedReplies(t *testing.T) {
	e := newEnv(t)
	alice, bob := e.user("alice"), e.user("bob")
	r := e.room(alice, subjects.ModeCleartext, "")
	e.join(r, bob)
	// alice listens on the inbox bob names and on her deliveries, in one
	// channel: whatever the router published to either comes in order.
	victimInbox := "_INBOX." + alice.Pub() + ".victim"
	ch := make(chan *nats.Msg, 64)
	deliverAll, _ := subjects.DeliverOf(alice.Pub())
	for _, s := range []string{victimInbox, deliverAll} {
		sub, err := alice.Conn.ChanSubscribe(s, ch)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	if err := alice.Conn.Flush(); err != nil {
		t.Fatal(err)
	}
	kvUsers, _ := e.bucketSeq(kvstore.BucketUsers)
	userRecord := "$KV." + kvstore.BucketUsers + "." + bob.Pub()
	for _, reply := range []string{victimInbox, userRecord, "_INBOX.notakey.x", "unibus.v1.room." + r.RoomID} {
		_, wire := bob.frame(r, "misdirected to "+reply)
		if err := bob.Conn.PublishMsg(&nats.Msg{Subject: bob.sendSubject(r.RoomID), Reply: reply, Data: wire}); err != nil {
			t.Fatal(err)
		}
	}
	_, wire, ack := bob.mustSend(r, "barrier")
	select {
	case m := <-ch:
		if m.Subject == victimInbox || !bytes.Equal(m.Data, wire) {
			t.Fatalf("alice got %q on %s before the barrier", m.Data, m.Subject)
		}
		if m.Header.Get(subjects.HeaderPrev) != "0" {
			t.Errorf("the barrier's prev is %s: a misdirected send was stored", m.Header.Get(subjects.HeaderPrev))
		}
	case <-time.After(timeout):
		t.Fatal("the barrier was not delivered")
	}
	if got := e.stored(r); len(got) != 1 || got[0].Seq != ack.Seq {
		t.Errorf("stored %d frames, want the barrier alone", len(got))
	}
	if st := e.stats(); st.Misdirected != 4 {
		t.Errorf("misdirected %d, want 4 (stats %+v)", st.Misdirected, st)
	}
	if after, _ := e.bucketSeq(kvstore.BucketUsers); after != kvUsers {
		t.Errorf("the users bucket was written (%d → %d)", kvUsers, after)
	}
}

// bucketSeq is the last sequence of a KV bucket's stream.
func (e *env) bucketSeq(bucket string) (uint64, error) {
	js, err := jetstream.New(e.node.StoreConn)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return 0, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq, nil
}

// TestViewUnavailable: without its membership view the router refuses
// every send (503): it fails closed.
func TestViewUnavailable(t *testing.T) {
	e := newEnv(t)
	alice := e.user("alice")
	r := e.room(alice, subjects.ModeCleartext, "")
	alice.mustSend(r, "before")
	router.StopMembershipView(e.node.Router())
	_, wire := alice.frame(r, "after")
	_, err := alice.send(r.RoomID, wire)
	wantRefused(t, err, subjects.CodeUnavailable, "retry")
	if n := e.logMessages(r.RoomID); n != 1 {
		t.Errorf("%d frames stored, want the one before", n)
	}
}

// TestBusy: a shard whose queue is full refuses at once (503) rather than
// wait; every send is answered, and every acked one stored.
func TestBusy(t *testing.T) {
	e := newEnv(t, noRateLimits, func(c *node.Config) { c.Router.Shards, c.Router.ShardQueue = 1, 1 })
	alice := e.user("alice")
	r := e.room(alice, subjects.ModeCleartext, "")
	const n = 200
	wires := make([][]byte, n)
	for i := range wires {
		_, wires[i] = alice.frame(r, "flood")
	}
	replies := make(chan *nats.Msg, n)
	inbox := "_INBOX." + alice.Pub() + ".busy"
	sub, err := alice.Conn.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for i, w := range wires {
		if err := alice.Conn.PublishMsg(&nats.Msg{Subject: alice.sendSubject(r.RoomID), Reply: inbox + "." + strconv.Itoa(i), Data: w}); err != nil {
			t.Fatal(err)
		}
	}
	acked, busy := 0, 0
	for range n {
		select {
		case m := <-replies:
			_, err := decodeAck(t, m)
			switch {
			case err == nil:
				acked++
			case errors.Is(err, subjects.ErrUnavailable):
				busy++
			default:
				t.Fatalf("reply %v, want an ack or 503", err)
			}
		case <-time.After(timeout):
			t.Fatalf("%d acks and %d refusals of %d sends: the rest unanswered", acked, busy, n)
		}
	}
	if busy == 0 || acked == 0 {
		t.Errorf("%d acked, %d busy: want both with a queue of one", acked, busy)
	}
	if got := e.logMessages(r.RoomID); got != uint64(acked) {
		t.Errorf("%d stored, %d acked", got, acked)
	}
}

// TestStopAnswersEverySend: stopping the router answers every send it
// received (an ack, or 503 to retry), and stores what it acked.
func TestStopAnswersEverySend(t *testing.T) {
	e := newEnv(t, noRateLimits)
	alice := e.user("alice")
	r := e.room(alice, subjects.ModeCleartext, "")
	const n = 100
	var (
		wg        sync.WaitGroup
		firstAck  = make(chan struct{})
		ackedOnce sync.Once
	)
	results := make(chan error, n)
	for range n {
		_, wire := alice.frame(r, "during stop")
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			m, err := alice.Conn.RequestMsgWithContext(ctx, &nats.Msg{Subject: alice.sendSubject(r.RoomID), Data: wire})
			if err == nil {
				_, err = decodeAck(t, m)
			}
			if err == nil {
				ackedOnce.Do(func() { close(firstAck) })
			}
			results <- err
		})
	}
	// Stop once the sends are under way: some acked, others in flight.
	select {
	case <-firstAck:
	case <-time.After(timeout):
		t.Fatal("no send acked")
	}
	if err := e.node.Router().Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	wg.Wait()
	close(results)
	acked := 0
	for err := range results {
		switch {
		case err == nil:
			acked++
		case errors.Is(err, subjects.ErrUnavailable), errors.Is(err, nats.ErrNoResponders):
		default:
			t.Errorf("send during stop: %v, want an ack, a 503 or no responders", err)
		}
	}
	t.Logf("%d of %d sends acked, the rest refused (503) or unanswered by anyone (no responders)", acked, n)
	if got := e.logMessages(r.RoomID); got != uint64(acked) {
		t.Errorf("%d stored, %d acked", got, acked)
	}
}

// TestDiscovery: the router is a micro service that "nats micro" lists,
// on the send subjects, in its queue group, with its stats.
func TestDiscovery(t *testing.T) {
	e := newEnv(t, func(c *node.Config) { c.Services.Version = "1.2.3" })
	info := e.node.Router().Service().Info()
	if info.Name != subjects.RouterService || info.Version != "1.2.3" || info.Description == "" || len(info.Endpoints) != 1 {
		t.Fatalf("info %+v", info)
	}
	ep := info.Endpoints[0]
	if ep.Name != subjects.EndpointSend || ep.Subject != subjects.SendAll || ep.QueueGroup != subjects.RouterQueue || ep.Metadata["max_bytes"] != "786432" {
		t.Errorf("endpoint %+v", ep)
	}
	alice := e.user("alice")
	r := e.room(alice, subjects.ModeCleartext, "")
	alice.mustSend(r, "counted")
	stats := e.node.Router().Service().Stats()
	raw, err := json.Marshal(stats.Endpoints[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	var data router.StatsData
	if err := json.Unmarshal(raw, &data); err != nil {
		t.Fatal(err)
	}
	if data.Received != 1 || data.Sent != 1 || data.Stored != 1 || data.Delivered != 1 {
		t.Errorf("stats data %s", raw)
	}
}

// TestSendRightAfterJoining: the router's view of the membership follows
// the store a little behind it; a send that comes right after the reply
// that made its sender a member (or created its room) is still accepted,
// and a non-member's is still refused.
func TestSendRightAfterJoining(t *testing.T) {
	e := newEnv(t, noRateLimits)
	alice, bob, mallory := e.user("alice"), e.user("bob"), e.user("mallory")
	for range 20 {
		r := e.room(alice, subjects.ModeCleartext, "")
		alice.mustSend(r, "right after creating")
		e.invite(r, bob)
		bob.Call(subjects.RoomsAccept, subjects.RoomRequest{RoomID: r.RoomID}, nil)
		bob.mustSend(r, "right after joining")
		// A sender's frames keep their order while the first waits for
		// the view: the next ones, sent at once, come after it.
		e.invite(r, mallory)
		mallory.Call(subjects.RoomsAccept, subjects.RoomRequest{RoomID: r.RoomID}, nil)
		inbox := "_INBOX." + mallory.Pub() + ".order"
		acks := make(chan *nats.Msg, 5)
		sub, err := mallory.Conn.ChanSubscribe(inbox+".*", acks)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			_, w := mallory.frame(r, "in order "+strconv.Itoa(i))
			if err := mallory.Conn.PublishMsg(&nats.Msg{Subject: mallory.sendSubject(r.RoomID), Reply: inbox + "." + strconv.Itoa(i), Data: w}); err != nil {
				t.Fatal(err)
			}
		}
		seqs := make([]uint64, 5)
		for range 5 {
			select {
			case m := <-acks:
				ack, err := decodeAck(t, m)
				if err != nil {
					t.Fatalf("mallory's send right after joining: %v", err)
				}
				i, _ := strconv.Atoi(m.Subject[len(inbox)+1:])
				seqs[i] = ack.Seq
			case <-time.After(timeout):
				t.Fatal("mallory's sends unanswered")
			}
		}
		_ = sub.Unsubscribe()
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Fatalf("mallory's frames stored as %v: out of the order sent", seqs)
			}
		}
	}
	r := e.room(alice, subjects.ModeCleartext, "")
	start := time.Now()
	_, wire := mallory.frame(r, "not a member")
	_, err := mallory.send(r.RoomID, wire)
	wantRefused(t, err, subjects.CodeForbidden, "is not a member")
	t.Logf("a non-member refused in %s; %d sends admitted on a recheck", time.Since(start).Round(time.Millisecond), e.stats().Rechecked)
}
