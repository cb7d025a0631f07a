package router_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/router"
	"github.com/unibus/unibus/subjects"
)

// TestNoReadingAroundTheHistoryService: a member removed from a room, a
// member invited late and a stranger try every way into the room log
// that does not go through the history service's visibility check: the
// JetStream API subjects that read a stream (direct gets, message gets,
// consumers of every shape, stream info), the room log's subject itself,
// and other members' deliveries. Every one of them is refused by the
// server, and nothing of the room's frames reaches them; through the
// history service, the removed member and the stranger get a refusal and
// the late member only the frames sent after its invitation. After its
// removal, no new frame is delivered to the removed member either.
func TestNoReadingAroundTheHistoryService(t *testing.T) {
	e := newEnv(t, noRateLimits)
	alice, bob, carol, mallory := e.user("alice"), e.user("bob"), e.user("carol"), e.user("mallory")
	// A cleartext room: were any of these ways open, the frames would be
	// readable as they are.
	r := e.room(alice, subjects.ModeCleartext, "")
	e.join(r, bob)
	bobGets := bob.deliveries()
	var early []uint64
	for i := range 3 {
		_, _, ack := alice.mustSend(r, fmt.Sprintf("before carol %d", i))
		early = append(early, ack.Seq)
	}
	for range early {
		bobGets.next()
	}
	e.join(r, carol)
	_, _, late := alice.mustSend(r, "after carol")
	bobGets.next()
	e.remove(r, bob)
	e.removedFromView(r, bob)
	_, _, afterRemoval := alice.mustSend(r, "after bob's removal")

	// Through the history service.
	for _, m := range []*member{bob, mallory} {
		var page subjects.HistoryResponse
		err := m.Request(subjects.RoomsHistory, subjects.HistoryRequest{RoomID: r.RoomID}, &page)
		if !errors.Is(err, subjects.ErrForbidden) && !errors.Is(err, subjects.ErrNotFound) {
			t.Errorf("%s reads the history: %v (%d frames), want 403 or 404 and nothing", m.name, err, len(page.Frames))
		}
	}
	var page subjects.HistoryResponse
	carol.Call(subjects.RoomsHistory, subjects.HistoryRequest{RoomID: r.RoomID}, &page)
	var carolSees []uint64
	for _, f := range page.Frames {
		carolSees = append(carolSees, f.Seq)
	}
	if len(carolSees) != 2 || carolSees[0] != late.Seq || carolSees[1] != afterRemoval.Seq {
		t.Errorf("carol, invited after seqs %v, reads %v; want only %d and %d", early, carolSees, late.Seq, afterRemoval.Seq)
	}

	// Around it.
	roomSubject, err := subjects.Room(r.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	aliceDeliveries, err := subjects.Deliver(alice.Pub(), r.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	stream := kvstore.StreamRoomLog
	publishes := []struct{ subject, body string }{
		{"$JS.API.DIRECT.GET." + stream, `{"seq":1,"next_by_subj":"` + roomSubject + `","batch":100}`},
		{"$JS.API.DIRECT.GET." + stream + "." + roomSubject, ""},
		{"$JS.API.STREAM.MSG.GET." + stream, `{"last_by_subj":"` + roomSubject + `"}`},
		{"$JS.API.STREAM.INFO." + stream, `{"subjects_filter":">"}`},
		{"$JS.API.CONSUMER.CREATE." + stream, `{"stream_name":"` + stream + `","config":{"deliver_policy":"all","ack_policy":"none","filter_subject":"` + roomSubject + `"}}`},
		{"$JS.API.CONSUMER.CREATE." + stream + ".peek." + roomSubject, `{"stream_name":"` + stream + `","config":{"name":"peek","deliver_policy":"all","ack_policy":"none","filter_subject":"` + roomSubject + `"}}`},
		{"$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".peek", `{"stream_name":"` + stream + `","config":{"durable_name":"peek","deliver_policy":"all","ack_policy":"none"}}`},
		{"$JS.API.CONSUMER.MSG.NEXT." + stream + ".peek", `{"batch":100}`},
		{"$JS.API.STREAM.LIST", ""},
		// Writing into the log directly would be stored as a frame.
		{roomSubject, "not a frame"},
		// Nor may anyone send as alice.
		{alice.sendSubject(r.RoomID), "not a frame"},
	}
	subscriptions := []string{roomSubject, subjects.RoomLogAll, aliceDeliveries, subjects.DeliverAll, subjects.SendAll, "$JS.>", ">"}
	before := e.logMessages(r.RoomID)
	for _, m := range []*member{bob, carol, mallory} {
		inbox := m.Conn.NewRespInbox()
		replies, err := m.Conn.SubscribeSync(inbox)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range publishes {
			if err := m.Conn.PublishRequest(p.subject, inbox, []byte(p.body)); err != nil {
				t.Fatalf("%s: publish %s: %v", m.name, p.subject, err)
			}
		}
		var subs []*nats.Subscription
		for _, s := range subscriptions {
			sub, err := m.Conn.SubscribeSync(s)
			if err != nil {
				t.Fatalf("%s: subscribe %s: %v", m.name, s, err)
			}
			subs = append(subs, sub)
		}
		if err := m.Conn.Flush(); err != nil {
			t.Fatal(err)
		}
		// The server refuses each one, and says so.
		for _, p := range publishes {
			e.refused(m, "Publish", p.subject)
		}
		for _, s := range subscriptions {
			e.refused(m, "Subscription", s)
		}
		// Make sure nothing was on its way: a frame sent now, and a
		// round trip to the server, come after anything those requests
		// could have caused.
		alice.mustSend(r, "witness for "+m.name)
		if err := m.Conn.Flush(); err != nil {
			t.Fatal(err)
		}
		if msg, err := replies.NextMsg(100 * time.Millisecond); err == nil {
			t.Errorf("%s got a reply on %s: %q", m.name, msg.Subject, msg.Data)
		}
		for i, sub := range subs {
			if msg, err := sub.NextMsg(10 * time.Millisecond); err == nil {
				t.Errorf("%s got a message through %s: %s %q", m.name, subscriptions[i], msg.Subject, msg.Data)
			}
		}
	}
	if after := e.logMessages(r.RoomID); after != before+3 {
		t.Errorf("the room log went from %d to %d frames; want only the 3 witnesses added", before, after)
	}
	// Bob's own deliveries stopped with his removal.
	select {
	case msg := <-bobGets.msgs:
		t.Errorf("bob, removed, was delivered seq %s", msg.Header.Get(subjects.HeaderSeq))
	default:
	}
}

// removedFromView waits until the router's membership view no longer has
// m in r.
func (e *env) removedFromView(r *room, m *member) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for router.Visible(e.node.Router(), r.RoomID, m.Pub()) {
		if time.Now().After(deadline) {
			e.t.Fatalf("%s removed from %s, but the router's view still has it after %s", m.name, r.RoomID, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// refused waits until the server has reported m's permission violation of
// kind ("Publish" or "Subscription") on subject.
func (e *env) refused(m *member, kind, subject string) {
	e.t.Helper()
	want := strings.ToLower(fmt.Sprintf("permissions violation for %s to %q", kind, subject))
	deadline := time.Now().Add(timeout)
	for {
		for _, err := range m.AsyncErrors() {
			if strings.Contains(strings.ToLower(err.Error()), want) {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Errorf("%s: the server reported no refusal of %s to %q within %s (errors: %v)", m.name, kind, subject, timeout, m.AsyncErrors())
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
