package kvstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/testio"
)

// TestForgedRecordsAreAbsent writes records behind the store's back, as a
// reply reflected into a bucket or a hand edit would, and checks that
// every read treats each one as absent (and logs it): a record whose
// content disagrees with its key never admits anyone.
func TestForgedRecordsAreAbsent(t *testing.T) {
	ctx := context.Background()
	logs := &testio.Buffer{}
	cfg := kvstore.DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	st, js := openStore(t, cfg)
	admin, mallory, stranger := newUserKey(t), newUserKey(t), newUserKey(t)
	if _, err := st.AddUser(ctx, kvstore.User{Pub: admin, Admin: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddUser(ctx, kvstore.User{Pub: mallory}); err != nil {
		t.Fatal(err)
	}
	id := anyRoomID()
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, History: "none", Owner: admin}, sealedKey("k1"))
	if err != nil {
		t.Fatal(err)
	}
	watcher, err := st.WatchAccess(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(watcher.Stop)

	put := func(bucket, key string, v any) {
		t.Helper()
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		data, ok := v.([]byte)
		if !ok {
			if data, err = json.Marshal(v); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := kv.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
	}
	// The reported attack: the services' error reply stored as a user.
	put(kvstore.BucketUsers, stranger, []byte(`{"error":"the request is not signed","code":401}`))
	// The administrator's record (a users.get reply) stored over mallory's.
	adminRecord, err := st.GetUser(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	put(kvstore.BucketUsers, mallory, adminRecord)
	// A membership of mallory in the room, made of another member's record
	// and of a role that does not exist.
	put(kvstore.BucketMembers, id+"."+mallory, kvstore.Member{RoomID: id, Pub: admin, Role: subjects.RoleOwner})
	put(kvstore.BucketRoomsByMember, mallory+"."+id, map[string]string{"role": subjects.RoleMember})
	// A room whose record names another room's subject.
	other := anyRoomID()
	forged := room
	forged.ID = other
	put(kvstore.BucketRooms, other, room)

	for _, pub := range []string{stranger, mallory} {
		if _, err := st.GetUser(ctx, pub); !errors.Is(err, kvstore.ErrNotFound) || !errors.Is(err, kvstore.ErrInvalidRecord) {
			t.Errorf("GetUser(%s) = %v, want ErrInvalidRecord (not found)", pub, err)
		}
		if _, err := st.GetUserFromLeader(ctx, pub); !errors.Is(err, kvstore.ErrNotFound) {
			t.Errorf("GetUserFromLeader(%s) = %v, want not found", pub, err)
		}
	}
	users, err := st.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].Pub != admin {
		t.Errorf("ListUsers = %+v, want only the administrator", users)
	}
	if _, err := st.GetMember(ctx, id, mallory); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("GetMember(mallory) = %v, want not found", err)
	}
	members, err := st.ListMembers(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 1 || members[0].Pub != admin {
		t.Errorf("ListMembers = %+v, want only the owner", members)
	}
	rooms, err := st.ListRoomsForEndpoint(ctx, mallory)
	if err != nil {
		t.Fatal(err)
	}
	if len(rooms) != 0 {
		t.Errorf("mallory's rooms = %+v, want none", rooms)
	}
	if _, err := st.GetRoom(ctx, other); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("GetRoom(forged) = %v, want not found", err)
	}
	// The access watcher takes the forged record over mallory's as a
	// revocation: mallory's connections are dropped, not promoted.
	select {
	case c := <-watcher.Changes():
		if c.Pub != mallory || c.Reason != kvstore.ReasonRevoked {
			t.Errorf("access change %+v, want mallory revoked", c)
		}
	case <-time.After(30 * time.Second):
		t.Error("the watcher reported no change for mallory's forged record")
	}
	if got := strings.Count(logs.String(), "invalid record treated as absent"); got == 0 {
		t.Error("no forged record was logged")
	}
	// The genuine records still read.
	if _, err := st.GetMember(ctx, id, admin); err != nil {
		t.Errorf("the owner's membership: %v", err)
	}
}
