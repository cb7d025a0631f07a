package kvstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// eventCases are the store suite's cases of the events (see TestStore).
var eventCases = []storeCase{
	{"Events", testEvents},
	{"EventsInvalid", testEventsInvalid},
}

// testEvents: each user reads its own events, in order, with their
// sequences, by pages, and no one else's.
func testEvents(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig()).Store
	alice, bob, carol := natstest.NewUserKey(t), natstest.NewUserKey(t), natstest.NewUserKey(t)
	room := anyRoomID()
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	sent := []subjects.Event{
		{Type: subjects.EventInvited, RoomID: room, By: bob, Time: at},
		{Type: subjects.EventRekeyed, RoomID: room, Epoch: 7},
		{Type: subjects.EventRemoved, RoomID: room, By: bob},
		{Type: subjects.EventRevoked, By: carol, Seq: 999},
	}
	var seqs []uint64
	for i, ev := range sent {
		seq, err := st.AppendEvent(ctx, alice, ev)
		if err != nil {
			t.Fatalf("append event %d: %v", i, err)
		}
		seqs = append(seqs, seq)
		if i == 1 {
			if _, err := st.AppendEvent(ctx, bob, subjects.Event{Type: subjects.EventInvited, RoomID: room, By: alice}); err != nil {
				t.Fatal(err)
			}
		}
	}
	read := func(pub string, req subjects.EventsRequest) subjects.EventsResponse {
		t.Helper()
		resp, err := st.ReadEvents(ctx, pub, req)
		if err != nil {
			t.Fatalf("ReadEvents(%+v): %v", req, err)
		}
		return resp
	}
	all := read(alice, subjects.EventsRequest{})
	if len(all.Events) != len(sent) || all.Next != 0 || all.LastSeq != seqs[3] {
		t.Fatalf("alice's events: %+v", all)
	}
	for i, ev := range all.Events {
		want := sent[i]
		want.Seq = seqs[i]
		if want.Time.IsZero() {
			want.Time = ev.Time // set when appended
		}
		if ev != want || ev.Time.IsZero() {
			t.Errorf("event %d = %+v, want %+v", i, ev, want)
		}
	}
	if !all.Events[0].Time.Equal(at) {
		t.Errorf("a given time became %s", all.Events[0].Time)
	}
	first := read(alice, subjects.EventsRequest{Limit: 2})
	if len(first.Events) != 2 || first.Next <= seqs[1] || first.Next > seqs[2] {
		t.Fatalf("a first page of 2: %+v", first)
	}
	rest := read(alice, subjects.EventsRequest{From: first.Next, Limit: 2})
	if len(rest.Events) != 2 || rest.Events[0].Seq != seqs[2] || rest.Next != 0 {
		t.Fatalf("the second page: %+v", rest)
	}
	if after := read(alice, subjects.EventsRequest{From: seqs[3] + 1}); len(after.Events) != 0 || after.LastSeq != seqs[3] || after.Next != 0 {
		t.Fatalf("after the last: %+v", after)
	}
	bobs := read(bob, subjects.EventsRequest{})
	if len(bobs.Events) != 1 || bobs.Events[0].By != alice || bobs.LastSeq != bobs.Events[0].Seq || slices.Contains(seqs, bobs.LastSeq) {
		t.Fatalf("bob's events: %+v", bobs)
	}
	if none := read(carol, subjects.EventsRequest{}); len(none.Events) != 0 || none.LastSeq != 0 {
		t.Fatalf("carol's events: %+v", none)
	}
}

// testEventsInvalid: bad keys, types and limits are ErrInvalid; nothing
// is stored.
func testEventsInvalid(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig()).Store
	alice := natstest.NewUserKey(t)
	for name, call := range map[string]func() error{
		"bad key": func() error {
			_, err := st.AppendEvent(ctx, "alice", subjects.Event{Type: subjects.EventInvited})
			return err
		},
		"wildcard key": func() error {
			_, err := st.AppendEvent(ctx, "*", subjects.Event{Type: subjects.EventInvited})
			return err
		},
		"unknown type": func() error {
			_, err := st.AppendEvent(ctx, alice, subjects.Event{Type: "promoted"})
			return err
		},
		"bad room": func() error {
			_, err := st.AppendEvent(ctx, alice, subjects.Event{Type: subjects.EventInvited, RoomID: "a.b"})
			return err
		},
		"read with a bad key": func() error {
			_, err := st.ReadEvents(ctx, "U*", subjects.EventsRequest{})
			return err
		},
		"negative limit": func() error {
			_, err := st.ReadEvents(ctx, alice, subjects.EventsRequest{Limit: -1})
			if !errors.Is(err, kvstore.ErrInvalidQuery) {
				return errors.New("not ErrInvalidQuery")
			}
			return err
		},
		"limit too large": func() error {
			_, err := st.ReadEvents(ctx, alice, subjects.EventsRequest{Limit: subjects.MaxEventsLimit + 1})
			return err
		},
	} {
		if err := call(); !errors.Is(err, kvstore.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if resp, err := st.ReadEvents(ctx, alice, subjects.EventsRequest{}); err != nil || len(resp.Events) != 0 {
		t.Fatalf("after refused appends: %+v, %v", resp, err)
	}
}
