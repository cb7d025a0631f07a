package kvstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// viewCases are the store suite's cases of the membership view (see
// TestStore).
var viewCases = []storeCase{
	{"MembershipView", testMembershipView},
}

// viewBound is how long a change may take to reach a view: generous, for
// -race on a shared machine; the view usually has it in milliseconds.
const viewBound = 15 * time.Second

// eventually polls cond until it returns nil or viewBound passes.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(viewBound)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %s", what, err, viewBound)
		}
		time.Sleep(10 * time.Millisecond) // poll interval; the deadline bounds the wait
	}
}

// checkIs returns nil when the view's Check of pub in room matches want
// (nil: a member).
func checkIs(v *kvstore.MembershipView, room, pub string, want error) func() error {
	return func() error {
		_, err := v.Check(room, pub)
		if want == nil && err == nil || want != nil && errors.Is(err, want) {
			return nil
		}
		if err == nil {
			return errors.New("a member")
		}
		return err
	}
}

// testMembershipView: the view answers from the buckets as they are when
// it starts and follows every change: members accepted, removed,
// revoked; invitees are not members; invalid records are absent; a
// stopped view answers ErrViewUnavailable.
func testMembershipView(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	owner, bob, carol := natstest.NewUserKey(t), natstest.NewUserKey(t), natstest.NewUserKey(t)
	for _, pub := range []string{owner, bob, carol} {
		if _, err := st.AddUser(ctx, kvstore.User{Pub: pub}); err != nil {
			t.Fatal(err)
		}
	}
	old, err := st.CreateRoom(ctx, kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeCleartext, Owner: owner}, kvstore.SealedKey{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddMember(ctx, old.ID, carol, subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
		t.Fatal(err)
	}

	v, err := st.WatchMembership(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	// Loaded: what was there before it started.
	p, err := v.Check(old.ID, carol)
	if err != nil || p != (kvstore.RoomPolicy{Mode: subjects.ModeCleartext, History: subjects.HistoryNone, Owner: owner}) {
		t.Fatalf("Check(old room, carol) = %+v, %v", p, err)
	}
	if got, want := v.Members(old.ID), slices.Sorted(slices.Values([]string{owner, carol})); !slices.Equal(got, want) {
		t.Fatalf("Members = %v, want %v", got, want)
	}
	if _, err := v.Check(anyRoomID(), owner); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("Check(no room) = %v, want ErrNotFound", err)
	}
	if v.Members(anyRoomID()) != nil {
		t.Fatal("members of no room")
	}

	// Followed: a new room, an invitee (not a member), its acceptance.
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeE2E, History: subjects.HistoryKeep, HistoryMaxAge: 90 * time.Minute, Owner: owner}, sealedKey("k1-owner"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new room's owner", checkIs(v, room.ID, owner, nil))
	if p, _ := v.Check(room.ID, owner); p != (kvstore.RoomPolicy{Mode: subjects.ModeE2E, History: subjects.HistoryKeep, Owner: owner, MaxAge: 90 * time.Minute}) {
		t.Fatalf("the new room's policy = %+v", p)
	}
	if _, err := st.Invite(ctx, room.ID, bob, room.Epoch, sealedKey("k1-bob")); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Check(room.ID, bob); !errors.Is(err, kvstore.ErrNotMember) || errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("Check(invitee) = %v, want ErrNotMember only", err)
	}
	if _, err := st.AcceptInvitation(ctx, room.ID, bob); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob accepted", checkIs(v, room.ID, bob, nil))
	if got, want := v.Members(room.ID), slices.Sorted(slices.Values([]string{owner, bob})); !slices.Equal(got, want) {
		t.Fatalf("Members = %v, want %v", got, want)
	}

	// Removed, revoked.
	if err := st.RemoveMember(ctx, room.ID, bob); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob removed", checkIs(v, room.ID, bob, kvstore.ErrNotMember))
	if _, err := st.RevokeUser(ctx, carol); err != nil {
		t.Fatal(err)
	}
	eventually(t, "carol revoked", checkIs(v, old.ID, carol, kvstore.ErrNotMember))
	if got := v.Members(old.ID); !slices.Equal(got, []string{owner}) {
		t.Fatalf("Members after the revocation = %v, want the owner only", got)
	}

	// A forged member record (its content another member's) is absent.
	members, err := e.js.KeyValue(ctx, kvstore.BucketMembers)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(kvstore.Member{RoomID: room.ID, Pub: owner, Role: subjects.RoleMember})
	if _, err := members.Put(ctx, room.ID+"."+carol, forged); err != nil {
		t.Fatal(err)
	}
	// A later valid change shows the forged one was seen and left out.
	if _, err := st.AddMember(ctx, room.ID, bob, subjects.RoleMember, room.Epoch, sealedKey("k1-bob")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "bob added back", checkIs(v, room.ID, bob, nil))
	if _, err := v.Check(room.ID, carol); !errors.Is(err, kvstore.ErrNotMember) {
		t.Fatalf("Check(forged member) = %v, want ErrNotMember", err)
	}

	// A view started now loads the same.
	v2, err := st.WatchMembership(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		room, pub string
		want      error
	}{{room.ID, owner, nil}, {room.ID, bob, nil}, {room.ID, carol, kvstore.ErrNotMember}, {old.ID, carol, kvstore.ErrNotMember}, {old.ID, owner, nil}} {
		if err := checkIs(v2, tc.room, tc.pub, tc.want)(); err != nil {
			t.Errorf("a new view: Check(%s) = %v, want %v", tc.pub, err, tc.want)
		}
	}
	v2.Stop()
	if _, err := v2.Check(room.ID, owner); !errors.Is(err, kvstore.ErrViewUnavailable) {
		t.Fatalf("Check after Stop = %v, want ErrViewUnavailable", err)
	}
	if v2.Members(room.ID) != nil {
		t.Fatal("Members after Stop")
	}
}

// TestMembershipViewFailsClosed: with the server down the view answers
// ErrViewUnavailable, never a stale answer; once the server is back it
// reloads by itself, changes made meanwhile included. Stopping it by its
// context ends it too.
func TestMembershipViewFailsClosed(t *testing.T) {
	ctx := context.Background()
	cfg := embedded.Config{Port: natstest.FreePorts(t, 1)[0], DataDir: t.TempDir()}
	srv := natstest.Start(t, cfg)
	_, js := natstest.JetStream(t, srv.ClientURL())
	st, err := kvstore.Open(ctx, js, kvstore.Config{Replicas: 1, OpTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	owner, bob := natstest.NewUserKey(t), natstest.NewUserKey(t)
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeCleartext, Owner: owner}, kvstore.SealedKey{})
	if err != nil {
		t.Fatal(err)
	}
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	v, err := st.WatchMembership(vctx)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	if err := checkIs(v, room.ID, owner, nil)(); err != nil {
		t.Fatal(err)
	}

	srv.Close()
	eventually(t, "server down", checkIs(v, room.ID, owner, kvstore.ErrViewUnavailable))
	if got := v.Members(room.ID); got != nil {
		t.Fatalf("Members with the server down = %v, want none", got)
	}

	// Back, and a change made through another connection before the
	// view's reconnects.
	srv = natstest.Start(t, cfg)
	_, js2 := natstest.JetStream(t, srv.ClientURL())
	other, err := kvstore.Open(ctx, js2, kvstore.Config{Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.AddMember(ctx, room.ID, bob, subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "server back", checkIs(v, room.ID, bob, nil))
	if err := checkIs(v, room.ID, owner, nil)(); err != nil {
		t.Fatal(err)
	}

	cancel()
	eventually(t, "context cancelled", checkIs(v, room.ID, owner, kvstore.ErrViewUnavailable))
}

// TestWatchMembershipFailsWithoutServer: a view that cannot load is an
// error, within its bound, and leaves nothing running.
func TestWatchMembershipFailsWithoutServer(t *testing.T) {
	ctx := context.Background()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	st, err := kvstore.Open(ctx, js, kvstore.Config{Replicas: 1, OpTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	start := time.Now()
	v, err := st.WatchMembership(ctx)
	if err == nil {
		v.Stop()
		t.Fatal("a view loaded with the server down")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("WatchMembership took %s to fail", d)
	}
}
