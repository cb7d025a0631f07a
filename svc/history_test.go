package svc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// sent is a frame sent through the router, with its ack.
type sent struct {
	wire []byte
	ack  subjects.SendAck
}

// send sends n new frames of u's to room and returns them with their acks.
func (e *env) send(t testing.TB, u *user, room subjects.RoomInfo, n int) []sent {
	t.Helper()
	out := make([]sent, 0, n)
	for range n {
		wire := u.frame(t, room, "frame of "+u.name)
		ack := decode[subjects.SendAck](t, e.sendWire(t, u, room, wire))
		if room.History == subjects.HistoryKeep && ack.Seq == 0 {
			t.Fatalf("ack %+v: no sequence in a room that keeps history", ack)
		}
		out = append(out, sent{wire, ack})
	}
	return out
}

// history reads a page of room's log as u.
func (e *env) history(t testing.TB, u *user, req subjects.HistoryRequest) subjects.HistoryResponse {
	t.Helper()
	return call[subjects.HistoryResponse](t, u, subjects.RoomsHistory, req)
}

// wantFrames checks that page holds exactly want, in order.
func wantFrames(t testing.TB, who string, page subjects.HistoryResponse, want []sent) {
	t.Helper()
	if len(page.Frames) != len(want) {
		t.Fatalf("%s sees %d frames, want %d", who, len(page.Frames), len(want))
	}
	for i, f := range page.Frames {
		if f.Seq != want[i].ack.Seq || !bytes.Equal(f.Frame, want[i].wire) || f.Time.IsZero() {
			t.Fatalf("%s's frame %d: seq %d (%d bytes, at %s), want seq %d and the bytes sent", who, i, f.Seq, len(f.Frame), f.Time, want[i].ack.Seq)
		}
	}
}

// logLastSeq is the room log stream's last sequence.
func (e *env) logLastSeq(t testing.TB) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	s, err := e.js.Stream(ctx, kvstore.StreamRoomLog)
	if err != nil {
		t.Fatalf("stream %s: %v", kvstore.StreamRoomLog, err)
	}
	return s.CachedInfo().State.LastSeq
}

// TestRoomsHistory: a member reads the frames stored since it was invited
// and no earlier ones; anyone else, a removed member included, reads
// nothing.
func TestRoomsHistory(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	if room.History != subjects.HistoryKeep {
		t.Fatalf("a new room keeps history %q, want %q", room.History, subjects.HistoryKeep)
	}
	early := e.send(t, e.alice, room, 3)
	owners := e.history(t, e.alice, subjects.HistoryRequest{RoomID: room.RoomID})
	wantFrames(t, "the owner", owners, early)
	if owners.LastSeq != early[2].ack.Seq || owners.FirstSeq > early[0].ack.Seq || owners.Next != 0 {
		t.Errorf("owner's page: first %d, last %d, next %d; want the room's frames from %d to %d", owners.FirstSeq, owners.LastSeq, owners.Next, early[0].ack.Seq, early[2].ack.Seq)
	}

	// Invited after the first frames: bob sees none of them, but those
	// sent between his invitation and his acceptance.
	e.propose(t, e.alice, room, e.bob)
	pending := e.send(t, e.alice, room, 1)
	wantError(t, e.bob.request(t, subjects.RoomsHistory, subjects.HistoryRequest{RoomID: room.RoomID}), subjects.CodeForbidden, "you are not a member of room "+room.RoomID)
	e.accept(t, e.bob, room)
	bobs := e.history(t, e.bob, subjects.HistoryRequest{RoomID: room.RoomID})
	wantFrames(t, "bob", bobs, pending)
	if bobs.FirstSeq <= early[2].ack.Seq || bobs.FirstSeq > pending[0].ack.Seq {
		t.Errorf("bob's first visible sequence %d: want above %d, at most %d", bobs.FirstSeq, early[2].ack.Seq, pending[0].ack.Seq)
	}
	// Asking for the early frames outright changes nothing.
	wantFrames(t, "bob from 0", e.history(t, e.bob, subjects.HistoryRequest{RoomID: room.RoomID, From: 1, Until: early[2].ack.Seq}), nil)
	wantFrames(t, "bob's last 10", e.history(t, e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Last: 10}), pending)
	wantFrames(t, "bob since the start", e.history(t, e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Since: time.Now().Add(-time.Hour)}), pending)

	// Later frames, by both: both see them.
	later := append(e.send(t, e.bob, room, 2), e.send(t, e.alice, room, 1)...)
	visible := append(append([]sent{}, pending...), later...)
	wantFrames(t, "bob", e.history(t, e.bob, subjects.HistoryRequest{RoomID: room.RoomID}), visible)
	wantFrames(t, "the owner", e.history(t, e.alice, subjects.HistoryRequest{RoomID: room.RoomID}), append(append([]sent{}, early...), visible...))
	// Filling a gap asks for exactly the frames missing.
	wantFrames(t, "bob's gap", e.history(t, e.bob, subjects.HistoryRequest{RoomID: room.RoomID, From: later[0].ack.Seq, Until: later[1].ack.Seq}), later[:2])
	// Pages: one frame at a time, then the rest.
	first := e.history(t, e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Limit: 1})
	wantFrames(t, "bob's first page", first, visible[:1])
	if first.Next != visible[1].ack.Seq {
		t.Errorf("next %d, want %d", first.Next, visible[1].ack.Seq)
	}
	wantFrames(t, "bob's next page", e.history(t, e.bob, subjects.HistoryRequest{RoomID: room.RoomID, From: first.Next}), visible[1:])
	// Scrolling back: the last two, then the two before.
	wantFrames(t, "bob's last 2", e.history(t, e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Last: 2}), visible[2:])
	wantFrames(t, "bob's 2 before", e.history(t, e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Last: 2, Before: visible[2].ack.Seq}), visible[:2])

	t.Run("refused", func(t *testing.T) {
		e.propose(t, e.alice, room, e.carol) // pending: not a member
		before, logBefore := e.snapshot(t), e.logLastSeq(t)
		notMember := "you are not a member of room " + room.RoomID
		for _, tc := range []struct {
			name string
			from *user
			req  subjects.HistoryRequest
			code int
			want string
		}{
			{"an invitee", e.carol, subjects.HistoryRequest{RoomID: room.RoomID}, subjects.CodeForbidden, notMember},
			{"a stranger to the room", e.admin, subjects.HistoryRequest{RoomID: room.RoomID}, subjects.CodeForbidden, notMember},
			{"no such room", e.alice, subjects.HistoryRequest{RoomID: newRoomID(e.alice)}, subjects.CodeNotFound, "not found"},
			{"no room", e.bob, subjects.HistoryRequest{}, subjects.CodeBadRequest, "room_id is required"},
			{"a bad room", e.bob, subjects.HistoryRequest{RoomID: "a.>"}, subjects.CodeBadRequest, "room_id"},
			{"a negative limit", e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Limit: -1}, subjects.CodeBadRequest, "limit must be 0"},
			{"too large a limit", e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Limit: subjects.MaxHistoryLimit + 1}, subjects.CodeBadRequest, "limit must be 0"},
			{"a negative last", e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Last: -1}, subjects.CodeBadRequest, "last must be 0"},
			{"last with from", e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Last: 2, From: 3}, subjects.CodeBadRequest, "omit from, since and until"},
			{"last with since", e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Last: 2, Since: time.Now()}, subjects.CodeBadRequest, "omit from, since and until"},
			{"before without last", e.bob, subjects.HistoryRequest{RoomID: room.RoomID, Before: 5}, subjects.CodeBadRequest, "before bounds last"},
			{"until below from", e.bob, subjects.HistoryRequest{RoomID: room.RoomID, From: 9, Until: 3}, subjects.CodeBadRequest, "until (3) is below from (9)"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				wantError(t, tc.from.request(t, subjects.RoomsHistory, tc.req), tc.code, tc.want)
			})
		}
		e.unchanged(t, before)
		if after := e.logLastSeq(t); after != logBefore {
			t.Errorf("the room log was written (%d → %d)", logBefore, after)
		}
	})

	t.Run("removed", func(t *testing.T) {
		req := subjects.RemoveRequest{RoomID: room.RoomID, Pub: e.bob.pub, Rekey: &subjects.RekeyBundle{
			FromEpoch: room.Epoch, ToEpoch: room.NextEpoch,
			Keys:   map[string][]byte{e.alice.pub: sealedKey(t), e.carol.pub: sealedKey(t)},
			Grants: map[string][]byte{e.alice.pub: grant(t), e.carol.pub: grant(t)},
		}}
		if err := subjects.SignOwner(e.alice.kp, &req); err != nil {
			t.Fatal(err)
		}
		call[subjects.RoomInfo](t, e.alice, subjects.RoomsRemove, req)
		wantError(t, e.bob.request(t, subjects.RoomsHistory, subjects.HistoryRequest{RoomID: room.RoomID}), subjects.CodeForbidden, "you are not a member of room "+room.RoomID)
		wantError(t, e.bob.request(t, subjects.RoomsHistory, subjects.HistoryRequest{RoomID: room.RoomID, Last: 1}), subjects.CodeForbidden, "not a member")
	})
}

// TestRoomsHistoryNone: a room that keeps no history stores nothing and
// has an empty log; its frames carry no sequence.
func TestRoomsHistoryNone(t *testing.T) {
	e := newEnv(t)
	room := call[subjects.RoomInfo](t, e.alice, subjects.RoomsCreate, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, History: subjects.HistoryNone})
	logBefore := e.logLastSeq(t)
	for _, s := range e.send(t, e.alice, room, 2) {
		if s.ack.Seq != 0 {
			t.Errorf("ack %+v: a sequence in a room without history", s.ack)
		}
	}
	page := e.history(t, e.alice, subjects.HistoryRequest{RoomID: room.RoomID})
	if len(page.Frames) != 0 || page.LastSeq != 0 {
		t.Errorf("history of a room without history: %+v", page)
	}
	if after := e.logLastSeq(t); after != logBefore {
		t.Errorf("the room log was written (%d → %d)", logBefore, after)
	}
}

// TestRoomsHistoryMaxAge: a room's own maximum age reaches the log: its
// frames expire then, while the deployment's other rooms keep theirs.
func TestRoomsHistoryMaxAge(t *testing.T) {
	e := newEnv(t)
	short := call[subjects.RoomInfo](t, e.alice, subjects.RoomsCreate, subjects.CreateRoomRequest{Mode: subjects.ModeCleartext, HistoryMaxAge: "1m"})
	if short.HistoryMaxAge != "1m0s" {
		t.Fatalf("room %+v, want a maximum age of a minute", short)
	}
	frames := e.send(t, e.alice, short, 1)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	s, err := e.js.Stream(ctx, kvstore.StreamRoomLog)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, frames[0].ack.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if ttl, err := time.ParseDuration(m.Header.Get(jetstream.MsgTTLHeader)); err != nil || ttl != time.Minute {
		t.Errorf("the frame of a room kept a minute has TTL %q, want a minute", m.Header.Get(jetstream.MsgTTLHeader))
	}
}

// TestUsersEvents: each change appends an event for the users it
// concerns, and each reads its own.
func TestUsersEvents(t *testing.T) {
	e := newEnv(t)
	dave := e.register(t, "dave")
	// bob's doorbell: the stored events are published on his subject.
	bell := e.subscribeAs(t, e.bob, mustEvents(t, e.bob.pub))
	// alice may not listen to bob's.
	eventsOfBob := mustEvents(t, e.bob.pub)
	e.subscribeAs(t, e.alice, eventsOfBob).refused(t, eventsOfBob)

	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.propose(t, e.alice, room, e.bob)
	select {
	case m := <-bell.msgs:
		var ev subjects.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil || ev.Type != subjects.EventInvited || ev.RoomID != room.RoomID {
			t.Errorf("bob's doorbell rang with %s (%v)", m.Data, err)
		}
	case <-time.After(requestTimeout):
		t.Fatal("bob's doorbell did not ring at his invitation")
	}
	e.accept(t, e.bob, room)
	e.propose(t, e.alice, room, e.carol)
	rekeyed := e.rekey(t, e.alice, room, e.alice, e.bob, e.carol)
	remove := subjects.RemoveRequest{RoomID: room.RoomID, Pub: e.bob.pub, Rekey: &subjects.RekeyBundle{
		FromEpoch: rekeyed.Epoch, ToEpoch: rekeyed.NextEpoch,
		Keys:   map[string][]byte{e.alice.pub: sealedKey(t), e.carol.pub: sealedKey(t)},
		Grants: map[string][]byte{e.alice.pub: grant(t), e.carol.pub: grant(t)},
	}}
	if err := subjects.SignOwner(e.alice.kp, &remove); err != nil {
		t.Fatal(err)
	}
	removed := call[subjects.RoomInfo](t, e.alice, subjects.RoomsRemove, remove)
	e.revoke(t, e.carol, dave)

	type want struct {
		typ   string
		epoch uint64
	}
	check := func(who string, got []subjects.Event, wants []want) {
		t.Helper()
		if len(got) != len(wants) {
			t.Fatalf("%s's events: %+v, want %d", who, got, len(wants))
		}
		for i, ev := range got {
			w := wants[i]
			by := e.alice.pub
			if w.typ == subjects.EventRevoked {
				by = e.admin.pub
			}
			if ev.Type != w.typ || ev.Epoch != w.epoch || ev.By != by || ev.Seq == 0 || ev.Time.IsZero() ||
				(w.typ != subjects.EventRevoked && ev.RoomID != room.RoomID) || (i > 0 && ev.Seq <= got[i-1].Seq) {
				t.Errorf("%s's event %d: %+v, want %s (epoch %d) by %s", who, i, ev, w.typ, w.epoch, by)
			}
		}
	}
	events := func(u *user, req subjects.EventsRequest) subjects.EventsResponse {
		t.Helper()
		return call[subjects.EventsResponse](t, u, subjects.UsersEvents, req)
	}
	check("bob", events(e.bob, subjects.EventsRequest{}).Events, []want{{subjects.EventInvited, 0}, {subjects.EventRekeyed, rekeyed.Epoch}, {subjects.EventRemoved, 0}})
	check("alice", events(e.alice, subjects.EventsRequest{}).Events, []want{{subjects.EventRekeyed, rekeyed.Epoch}, {subjects.EventRekeyed, removed.Epoch}})
	if got := events(dave, subjects.EventsRequest{}); len(got.Events) != 0 {
		t.Errorf("dave, whom nothing happened to, has events %+v", got.Events)
	}
	if got := events(e.admin, subjects.EventsRequest{}); len(got.Events) != 0 {
		t.Errorf("the admin, who revoked carol, has events %+v", got.Events)
	}
	// carol is revoked: she cannot ask, the store holds her events.
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	carols, err := e.store.ReadEvents(ctx, e.carol.pub, subjects.EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	check("carol", carols.Events, []want{{subjects.EventInvited, 0}, {subjects.EventRekeyed, rekeyed.Epoch}, {subjects.EventRekeyed, removed.Epoch}, {subjects.EventRevoked, 0}})

	// Pages.
	all := events(e.bob, subjects.EventsRequest{}).Events
	first := events(e.bob, subjects.EventsRequest{Limit: 1})
	if len(first.Events) != 1 || first.Events[0] != all[0] || first.Next == 0 || first.LastSeq < all[2].Seq {
		t.Fatalf("first page %+v, want one event and a next", first)
	}
	rest := events(e.bob, subjects.EventsRequest{From: first.Next})
	if len(rest.Events) != 2 || rest.Events[0] != all[1] || rest.Events[1] != all[2] || rest.Next != 0 {
		t.Errorf("next page %+v, want bob's two other events", rest)
	}

	before := e.snapshot(t)
	for _, limit := range []int{-1, subjects.MaxEventsLimit + 1} {
		wantError(t, e.bob.request(t, subjects.UsersEvents, subjects.EventsRequest{Limit: limit}), subjects.CodeBadRequest, "limit must be 0")
	}
	e.unchanged(t, before)
}

// mustEvents is the subject of pub's events.
func mustEvents(t testing.TB, pub string) string {
	t.Helper()
	s, err := subjects.Events(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
