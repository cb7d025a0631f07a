package kvstore_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// openStore starts a server and opens a store on it.
func openStore(t *testing.T, cfg kvstore.Config) (*kvstore.Store, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	st, err := kvstore.Open(context.Background(), js, cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st, js
}

func newUserKey(t testing.TB) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestConfigValidation(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	for _, tc := range []struct {
		name string
		cfg  kvstore.Config
	}{
		{"zero replicas", kvstore.Config{}},
		{"six replicas", kvstore.Config{Replicas: 6}},
		{"negative replicas", kvstore.Config{Replicas: -1}},
		{"negative timeout", kvstore.Config{Replicas: 1, OpTimeout: -time.Second}},
		{"nonce ttl below a second", kvstore.Config{Replicas: 1, NonceTTL: 500 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kvstore.Open(context.Background(), js, tc.cfg)
			if !errors.Is(err, kvstore.ErrConfigValidation) {
				t.Fatalf("Open(%+v) = %v, want ErrConfigValidation", tc.cfg, err)
			}
		})
	}
	// Nothing was created by the refused configurations.
	names := js.KeyValueStoreNames(context.Background())
	for n := range names.Name() {
		t.Errorf("bucket %s created by an invalid configuration", n)
	}
}

func TestUsers(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t, kvstore.DefaultConfig())
	admin := newUserKey(t)
	plain := newUserKey(t)

	if _, err := st.AddUser(ctx, kvstore.User{Pub: admin, Name: "ada", Admin: true}); err != nil {
		t.Fatalf("add admin: %v", err)
	}
	// Keys are normalized: lower case with spaces is the same user.
	messy := "  " + strings.ToLower(plain) + "\n"
	u, err := st.AddUser(ctx, kvstore.User{Pub: messy, Name: "bob"})
	if err != nil {
		t.Fatalf("add messy key: %v", err)
	}
	if u.Pub != plain {
		t.Fatalf("stored pub %q, want normalized %q", u.Pub, plain)
	}
	if _, err := st.AddUser(ctx, kvstore.User{Pub: strings.ToLower(plain)}); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("duplicate add = %v, want ErrExists", err)
	}

	got, err := st.GetUser(ctx, strings.ToLower(admin))
	if err != nil || got.Name != "ada" || !got.Admin || got.AddedAt.IsZero() {
		t.Fatalf("get admin = %+v, %v", got, err)
	}
	for _, tc := range []struct {
		pub             string
		authorized, adm bool
	}{{admin, true, true}, {plain, true, false}, {newUserKey(t), false, false}} {
		ok, err := st.IsAuthorized(ctx, tc.pub)
		if err != nil || ok != tc.authorized {
			t.Errorf("IsAuthorized(%s) = %v, %v; want %v", tc.pub, ok, err, tc.authorized)
		}
		ok, err = st.HasAdmin(ctx, tc.pub)
		if err != nil || ok != tc.adm {
			t.Errorf("HasAdmin(%s) = %v, %v; want %v", tc.pub, ok, err, tc.adm)
		}
	}

	// The leader read agrees with the direct read, and misses the same way.
	lead, err := st.GetUserFromLeader(ctx, strings.ToLower(admin))
	if err != nil || lead.Pub != admin || !lead.Admin || !lead.AddedAt.Equal(got.AddedAt) {
		t.Fatalf("GetUserFromLeader = %+v, %v; want %+v", lead, err, got)
	}
	if _, err := st.GetUserFromLeader(ctx, newUserKey(t)); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("GetUserFromLeader(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := st.GetUserFromLeader(ctx, "users.>"); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("GetUserFromLeader(wildcard) = %v, want ErrInvalid", err)
	}

	users, err := st.ListUsers(ctx)
	if err != nil || len(users) != 2 {
		t.Fatalf("list = %d users, %v; want 2", len(users), err)
	}

	if _, err := st.RevokeUser(ctx, admin); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if ok, _ := st.IsAuthorized(ctx, admin); ok {
		t.Fatal("revoked user still authorized")
	}
	if u, err := st.GetUserFromLeader(ctx, admin); err != nil || !u.Revoked() {
		t.Fatalf("leader read after revoke = %+v, %v; want revoked", u, err)
	}
	if ok, _ := st.HasAdmin(ctx, admin); ok {
		t.Fatal("revoked admin still admin")
	}
	again, err := st.RevokeUser(ctx, admin)
	if err != nil || !again.Revoked() {
		t.Fatalf("second revoke = %+v, %v; want revoked, no error", again, err)
	}
	if _, err := st.EnsureAdmin(ctx, admin, ""); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("EnsureAdmin(revoked) = %v, want ErrInvalid", err)
	}
	promoted, err := st.EnsureAdmin(ctx, plain, "")
	if err != nil || !promoted.Admin {
		t.Fatalf("EnsureAdmin(existing) = %+v, %v", promoted, err)
	}

	if _, err := st.SetEncryptionKey(ctx, plain, []byte("pk"), []byte("sig")); err != nil {
		t.Fatalf("set key: %v", err)
	}
	if got, _ := st.GetUser(ctx, plain); string(got.EncKey) != "pk" || string(got.EncKeySig) != "sig" {
		t.Fatalf("encryption key not stored: %+v", got)
	}
	if _, err := st.SetEncryptionKey(ctx, plain, nil, []byte("sig")); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("empty key = %v, want ErrInvalid", err)
	}
}

func TestInvalidUserKeysStoreNothing(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t, kvstore.DefaultConfig())
	akp, _ := nkeys.CreateAccount()
	accountPub, _ := akp.PublicKey()
	for _, bad := range []string{"", " ", "not-a-key", accountPub, "U" + strings.Repeat("A", 55), "UABC.DEF", "*", ">"} {
		if _, err := st.AddUser(ctx, kvstore.User{Pub: bad}); !errors.Is(err, kvstore.ErrInvalid) {
			t.Errorf("AddUser(%q) = %v, want ErrInvalid", bad, err)
		}
		if _, err := st.IsAuthorized(ctx, bad); err == nil {
			t.Errorf("IsAuthorized(%q) gave no error", bad)
		}
	}
	users, err := st.ListUsers(ctx)
	if err != nil || len(users) != 0 {
		t.Fatalf("users after invalid adds = %v, %v; want none", users, err)
	}
}

func TestListUsersPage(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t, kvstore.DefaultConfig())
	var want []string
	for range 7 {
		u, err := st.AddUser(ctx, kvstore.User{Pub: newUserKey(t)})
		if err != nil {
			t.Fatalf("add: %v", err)
		}
		want = append(want, u.Pub)
	}
	slices.Sort(want)
	if _, err := st.RevokeUser(ctx, want[3]); err != nil {
		t.Fatalf("revoke: %v", err)
	}

	// Pages of 3 walk every user once, in key order, revoked ones included.
	var got []string
	after := ""
	for pages := 1; ; pages++ {
		page, more, err := st.ListUsersPage(ctx, after, 3)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if len(page) == 0 || len(page) > 3 {
			t.Fatalf("page %d holds %d users, want 1 to 3", pages, len(page))
		}
		for _, u := range page {
			got = append(got, u.Pub)
			if u.Pub == want[3] && !u.Revoked() {
				t.Errorf("revoked user %s listed unrevoked", u.Pub)
			}
		}
		after = page[len(page)-1].Pub
		if !more {
			if pages != 3 {
				t.Errorf("%d pages of 3 for 7 users, want 3", pages)
			}
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged users = %v, want %v", got, want)
	}

	// A cursor need not be a user; past the last key the page is empty.
	page, more, err := st.ListUsersPage(ctx, want[1]+"A", 100)
	if err != nil || more || len(page) != 5 || page[0].Pub != want[2] {
		t.Fatalf("page after a non-user = %d users (first %v), more %v, %v; want 5 from %s", len(page), page, more, err, want[2])
	}
	page, more, err = st.ListUsersPage(ctx, want[6], 100)
	if err != nil || more || len(page) != 0 {
		t.Fatalf("page after the last = %v, %v, %v; want empty", page, more, err)
	}
	page, more, err = st.ListUsersPage(ctx, "", 7)
	if err != nil || more || len(page) != 7 {
		t.Fatalf("a page of exactly all = %d users, more %v, %v; want 7, false", len(page), more, err)
	}
	if _, _, err := st.ListUsersPage(ctx, "", 0); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("limit 0 = %v, want ErrInvalid", err)
	}
}

func TestRoomsLifecycle(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t, kvstore.DefaultConfig())
	owner, bob, carol := newUserKey(t), newUserKey(t), newUserKey(t)
	id := subjects.NewRoomID()

	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Name: "ops", Mode: subjects.ModeE2E, Policy: "none", Owner: owner}, []byte("k1-owner"))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	wantSubject, _ := subjects.Room(id)
	if room.Epoch != 1 || room.Subject != wantSubject || room.Owner != owner {
		t.Fatalf("created room = %+v", room)
	}
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, []byte("x")); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("duplicate create = %v, want ErrExists", err)
	}
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: bob}, []byte("x")); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("create over another's room = %v, want ErrExists", err)
	}

	// Invite bob with a key for the current epoch; a stale epoch conflicts.
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 7, []byte("k7-bob")); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("invite with wrong epoch = %v, want ErrConflict", err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, nil); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("invite without key = %v, want ErrInvalid", err)
	}
	m, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, []byte("k1-bob"))
	if err != nil || m.Role != subjects.RoleMember || m.JoinedEpoch != 1 {
		t.Fatalf("invite bob = %+v, %v", m, err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, []byte("k1-bob")); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("second invite = %v, want ErrExists", err)
	}
	if _, err := st.AddMember(ctx, id, carol, subjects.RoleMember, 1, []byte("k1-carol")); err != nil {
		t.Fatalf("invite carol: %v", err)
	}

	members, err := st.ListMembers(ctx, id)
	if err != nil || len(members) != 3 {
		t.Fatalf("members = %+v, %v; want 3", members, err)
	}
	roles := map[string]string{}
	for _, m := range members {
		roles[m.Pub] = m.Role
	}
	if roles[owner] != subjects.RoleOwner || roles[bob] != subjects.RoleMember || roles[carol] != subjects.RoleMember {
		t.Fatalf("roles = %v", roles)
	}

	mine, err := st.ListRoomsForEndpoint(ctx, owner)
	if err != nil || len(mine) != 1 {
		t.Fatalf("owner's rooms = %+v, %v", mine, err)
	}
	want := kvstore.RoomRef{RoomID: id, Subject: wantSubject, Epoch: 1, Policy: "none", Role: subjects.RoleOwner, Mode: subjects.ModeE2E, Name: "ops", Owner: owner}
	if mine[0] != want {
		t.Fatalf("owner's room ref = %+v, want %+v", mine[0], want)
	}

	key, err := st.GetRoomKey(ctx, id, 1, bob)
	if err != nil || string(key) != "k1-bob" {
		t.Fatalf("bob's key = %q, %v", key, err)
	}

	// Remove carol, rekey for the rest: carol has no key at the new epoch.
	if err := st.RemoveMember(ctx, id, carol); err != nil {
		t.Fatalf("remove carol: %v", err)
	}
	if err := st.RemoveMember(ctx, id, carol); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("remove carol again = %v, want ErrNotFound", err)
	}
	if refs, err := st.ListRoomsForEndpoint(ctx, carol); err != nil || refs == nil || len(refs) != 0 {
		t.Fatalf("carol's rooms after removal = %#v, %v; want empty, non-nil", refs, err)
	}
	// Keys that still include carol no longer cover the members.
	if _, err := st.Rekey(ctx, id, 1, map[string][]byte{owner: []byte("a"), bob: []byte("b"), carol: []byte("c")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey including a removed member = %v, want ErrConflict", err)
	}
	epoch, err := st.Rekey(ctx, id, 1, map[string][]byte{owner: []byte("k2-owner"), bob: []byte("k2-bob")})
	if err != nil {
		t.Fatalf("rekey: %v", err)
	}
	if epoch <= 1 {
		t.Fatalf("new epoch %d not after 1", epoch)
	}
	latestEpoch, latest, err := st.LatestRoomKey(ctx, id, bob)
	if err != nil || latestEpoch != epoch || string(latest) != "k2-bob" {
		t.Fatalf("latest for bob = %d %q %v; want %d k2-bob", latestEpoch, latest, err, epoch)
	}
	if _, _, err := st.LatestRoomKey(ctx, id, carol); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("latest for removed carol = %v, want ErrNotFound", err)
	}
	// The old epoch's key is still readable (history); the future is not.
	if k, err := st.GetRoomKey(ctx, id, 1, bob); err != nil || string(k) != "k1-bob" {
		t.Fatalf("old key = %q, %v", k, err)
	}
	if _, err := st.GetRoomKey(ctx, id, epoch+1, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("future epoch key = %v, want ErrNotFound", err)
	}
	// A stale rekey conflicts.
	if _, err := st.Rekey(ctx, id, 1, map[string][]byte{owner: []byte("x"), bob: []byte("y")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("stale rekey = %v, want ErrConflict", err)
	}
	got, err := st.GetRoom(ctx, id)
	if err != nil || got.Epoch != epoch {
		t.Fatalf("room after rekeys = %+v, %v; want epoch %d", got, err, epoch)
	}
}

func TestCleartextRoom(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t, kvstore.DefaultConfig())
	owner, bob := newUserKey(t), newUserKey(t)
	id := subjects.NewRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeCleartext, Owner: owner}, []byte("k")); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("cleartext with key = %v, want ErrInvalid", err)
	}
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeCleartext, Owner: owner}, nil)
	if err != nil || room.Epoch != 0 {
		t.Fatalf("create cleartext = %+v, %v", room, err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 0, nil); err != nil {
		t.Fatalf("add to cleartext: %v", err)
	}
	if _, err := st.Rekey(ctx, id, 0, map[string][]byte{owner: []byte("a"), bob: []byte("b")}); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("rekey cleartext = %v, want ErrInvalid", err)
	}
	if _, _, err := st.LatestRoomKey(ctx, id, bob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("key of cleartext room = %v, want ErrNotFound", err)
	}
}

func TestInvalidRoomInputStoresNothing(t *testing.T) {
	ctx := context.Background()
	st, js := openStore(t, kvstore.DefaultConfig())
	owner := newUserKey(t)
	for _, tc := range []struct {
		name string
		room kvstore.Room
		key  []byte
	}{
		{"wildcard id", kvstore.Room{ID: "a.*", Mode: subjects.ModeE2E, Owner: owner}, []byte("k")},
		{"full wildcard id", kvstore.Room{ID: ">", Mode: subjects.ModeE2E, Owner: owner}, []byte("k")},
		{"space in id", kvstore.Room{ID: "a b", Mode: subjects.ModeE2E, Owner: owner}, []byte("k")},
		{"empty id", kvstore.Room{ID: "", Mode: subjects.ModeE2E, Owner: owner}, []byte("k")},
		{"bad mode", kvstore.Room{ID: subjects.NewRoomID(), Mode: "rot13", Owner: owner}, []byte("k")},
		{"bad owner", kvstore.Room{ID: subjects.NewRoomID(), Mode: subjects.ModeE2E, Owner: "bob"}, []byte("k")},
		{"e2e without key", kvstore.Room{ID: subjects.NewRoomID(), Mode: subjects.ModeE2E, Owner: owner}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := st.CreateRoom(ctx, tc.room, tc.key); !errors.Is(err, kvstore.ErrInvalid) {
				t.Fatalf("CreateRoom = %v, want ErrInvalid", err)
			}
		})
	}
	for _, b := range []string{kvstore.BucketRooms, kvstore.BucketMembers, kvstore.BucketRoomsByMember, kvstore.BucketRoomKeys} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		status, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if status.Values() != 0 {
			t.Errorf("bucket %s holds %d values after refused input", b, status.Values())
		}
	}
}

func TestNotFound(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t, kvstore.DefaultConfig())
	nobody := newUserKey(t)
	ghost := subjects.NewRoomID()
	owner := newUserKey(t)
	real := subjects.NewRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: real, Mode: subjects.ModeE2E, Owner: owner}, []byte("k")); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, checks["GetUser"] = st.GetUser(ctx, nobody)
	_, checks["RevokeUser"] = st.RevokeUser(ctx, nobody)
	_, checks["SetEncryptionKey"] = st.SetEncryptionKey(ctx, nobody, []byte("k"), []byte("s"))
	_, checks["GetRoom"] = st.GetRoom(ctx, ghost)
	_, checks["GetMember(no room)"] = st.GetMember(ctx, ghost, owner)
	_, checks["GetMember(no member)"] = st.GetMember(ctx, real, nobody)
	_, checks["AddMember(no room)"] = st.AddMember(ctx, ghost, nobody, subjects.RoleMember, 1, []byte("k"))
	checks["RemoveMember(no room)"] = st.RemoveMember(ctx, ghost, owner)
	checks["RemoveMember(no member)"] = st.RemoveMember(ctx, real, nobody)
	_, checks["ListMembers"] = st.ListMembers(ctx, ghost)
	_, checks["GetRoomKey(no room)"] = st.GetRoomKey(ctx, ghost, 1, owner)
	_, checks["GetRoomKey(no key)"] = st.GetRoomKey(ctx, real, 1, nobody)
	_, _, checks["LatestRoomKey(no room)"] = st.LatestRoomKey(ctx, ghost, owner)
	_, _, checks["LatestRoomKey(no key)"] = st.LatestRoomKey(ctx, real, nobody)
	_, checks["Rekey(no room)"] = st.Rekey(ctx, ghost, 1, map[string][]byte{owner: []byte("k")})
	for name, err := range checks {
		if !errors.Is(err, kvstore.ErrNotFound) {
			t.Errorf("%s = %v, want ErrNotFound", name, err)
		}
	}
	refs, err := st.ListRoomsForEndpoint(ctx, nobody)
	if err != nil || refs == nil || len(refs) != 0 {
		t.Fatalf("rooms of nobody = %#v, %v; want empty non-nil slice", refs, err)
	}
}

func TestFailClosedWhenServerDown(t *testing.T) {
	ctx := context.Background()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	const opTimeout = 500 * time.Millisecond
	st, err := kvstore.Open(ctx, js, kvstore.Config{Replicas: 1, OpTimeout: opTimeout})
	if err != nil {
		t.Fatal(err)
	}
	admin := newUserKey(t)
	if _, err := st.AddUser(ctx, kvstore.User{Pub: admin, Admin: true}); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.HasAdmin(ctx, admin); !ok || err != nil {
		t.Fatalf("before shutdown HasAdmin = %v, %v", ok, err)
	}
	srv.Close()

	// A generous bound over the operation timeout for scheduling under -race.
	const bound = opTimeout + time.Second
	for name, call := range map[string]func() (bool, error){
		"IsAuthorized": func() (bool, error) { return st.IsAuthorized(ctx, admin) },
		"HasAdmin":     func() (bool, error) { return st.HasAdmin(ctx, admin) },
		"GetUserFromLeader": func() (bool, error) {
			_, err := st.GetUserFromLeader(ctx, admin)
			return err == nil, err
		},
		"ClaimNonce": func() (bool, error) {
			err := st.ClaimNonce(ctx, "fresh-nonce")
			return err == nil, err
		},
	} {
		start := time.Now()
		ok, err := call()
		elapsed := time.Since(start)
		if ok {
			t.Errorf("%s admitted with the server down", name)
		}
		if err == nil {
			t.Errorf("%s reported no error with the server down", name)
		}
		if elapsed > bound {
			t.Errorf("%s took %s, want within %s", name, elapsed, bound)
		}
	}
}

func TestNonces(t *testing.T) {
	ctx := context.Background()
	srv := natstest.RunServer(t)
	_, js1 := natstest.JetStream(t, srv.ClientURL())
	_, js2 := natstest.JetStream(t, srv.ClientURL())
	cfg := kvstore.Config{Replicas: 1, NonceTTL: time.Second}
	st1, err := kvstore.Open(ctx, js1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := kvstore.Open(ctx, js2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st1.ClaimNonce(ctx, "n-1"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := st1.ClaimNonce(ctx, "n-1"); !errors.Is(err, kvstore.ErrReplay) {
		t.Fatalf("replay = %v, want ErrReplay", err)
	}
	if err := st2.ClaimNonce(ctx, "n-1"); !errors.Is(err, kvstore.ErrReplay) {
		t.Fatalf("replay from a second connection = %v, want ErrReplay", err)
	}
	if err := st2.ClaimNonce(ctx, "n-2"); err != nil {
		t.Fatalf("other nonce: %v", err)
	}
	for _, bad := range []string{"", strings.Repeat("x", 300)} {
		if err := st1.ClaimNonce(ctx, bad); !errors.Is(err, kvstore.ErrInvalid) {
			t.Errorf("ClaimNonce(len %d) = %v, want ErrInvalid", len(bad), err)
		}
	}
	// After the TTL the key expires and the nonce may be claimed again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := st1.ClaimNonce(ctx, "n-1")
		if err == nil {
			break
		}
		if !errors.Is(err, kvstore.ErrReplay) {
			t.Fatalf("claim after TTL: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("nonce still claimed 10s after a 1s TTL")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestConcurrentRekeysOneWinner(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t, kvstore.DefaultConfig())
	owner, bob := newUserKey(t), newUserKey(t)
	for round := range 5 {
		id := subjects.NewRoomID()
		if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, []byte("k1")); err != nil {
			t.Fatal(err)
		}
		if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 1, []byte("k1b")); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 2)
		epochs := make([]uint64, 2)
		for i := range 2 {
			wg.Go(func() {
				tag := []byte{byte('a' + i)}
				epochs[i], errs[i] = st.Rekey(ctx, id, 1, map[string][]byte{owner: tag, bob: tag})
			})
		}
		wg.Wait()
		wins, conflicts := 0, 0
		var winner int
		for i, err := range errs {
			switch {
			case err == nil:
				wins++
				winner = i
			case errors.Is(err, kvstore.ErrConflict):
				conflicts++
			default:
				t.Fatalf("round %d: rekey %d: %v", round, i, err)
			}
		}
		if wins != 1 || conflicts != 1 {
			t.Fatalf("round %d: %d winners, %d conflicts; want 1 and 1", round, wins, conflicts)
		}
		// The committed epoch serves exactly the winner's keys.
		epoch, key, err := st.LatestRoomKey(ctx, id, bob)
		if err != nil || epoch != epochs[winner] || key[0] != byte('a'+winner) {
			t.Fatalf("round %d: latest = %d %q %v; want winner %d's key at %d", round, epoch, key, err, winner, epochs[winner])
		}
	}
}

func TestR3Cluster(t *testing.T) {
	ctx := context.Background()
	c := natstest.RunCluster(t, 3)
	_, js := natstest.JetStream(t, c.Servers[0].ClientURL())
	st, err := kvstore.Open(ctx, js, kvstore.Config{Replicas: 3})
	if err != nil {
		t.Fatalf("open R3: %v", err)
	}
	for _, b := range []string{kvstore.BucketUsers, kvstore.BucketRooms, kvstore.BucketMembers, kvstore.BucketRoomsByMember, kvstore.BucketRoomKeys, kvstore.BucketNonces} {
		stream, err := js.Stream(ctx, "KV_"+b)
		if err != nil {
			t.Fatal(err)
		}
		if r := stream.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("bucket %s has %d replicas, want 3", b, r)
		}
	}
	owner := newUserKey(t)
	if _, err := st.AddUser(ctx, kvstore.User{Pub: owner}); err != nil {
		t.Fatal(err)
	}
	id := subjects.NewRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, []byte("k")); err != nil {
		t.Fatal(err)
	}
	// Read back through another node.
	_, js3 := natstest.JetStream(t, c.Servers[2].ClientURL())
	st3, err := kvstore.Open(ctx, js3, kvstore.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := st3.IsAuthorized(ctx, owner); !ok || err != nil {
		t.Fatalf("authorized via node 3 = %v, %v", ok, err)
	}
	refs, err := st3.ListRoomsForEndpoint(ctx, owner)
	if err != nil || len(refs) != 1 || refs[0].RoomID != id {
		t.Fatalf("rooms via node 3 = %+v, %v", refs, err)
	}
	if err := st.ClaimNonce(ctx, "r3"); err != nil {
		t.Fatal(err)
	}
	if err := st3.ClaimNonce(ctx, "r3"); !errors.Is(err, kvstore.ErrReplay) {
		t.Fatalf("replay on another node = %v, want ErrReplay", err)
	}

	// Quorum lost: two of three nodes down. A Raft leader keeps leading
	// for up to ~20 s before it notices; admission reads must fail closed
	// much sooner, within the replica silence bound plus one check, and
	// stay failed. Writes fail at once.
	if _, err := st3.GetUserFromLeader(ctx, owner); err != nil {
		t.Fatalf("leader read before the loss: %v", err)
	}
	c.Stop(0)
	c.Stop(1)
	if err := st3.ClaimNonce(ctx, "after-loss"); err == nil {
		t.Fatal("nonce claimed without quorum")
	}
	// Reads as the callout makes them: each within its 1 s deadline.
	read := func() (kvstore.User, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return st3.GetUserFromLeader(ctx, owner)
	}
	lostAt := time.Now()
	bound := 3*time.Second + 500*time.Millisecond + 2*time.Second
	for {
		_, err := read()
		if err != nil {
			t.Logf("admission reads fail %s after the loss: %v", time.Since(lostAt).Round(time.Millisecond), err)
			break
		}
		if time.Since(lostAt) > bound {
			t.Fatalf("leader reads still answered %s after quorum was lost (bound %s)", time.Since(lostAt), bound)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range 3 {
		if u, err := read(); err == nil {
			t.Fatalf("leader read answered again without quorum: %+v", u)
		}
	}
}

func TestRekeyToEpoch(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t, kvstore.DefaultConfig())
	owner := newUserKey(t)
	id := subjects.NewRoomID()
	room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, []byte("k1"))
	if err != nil {
		t.Fatal(err)
	}
	if room.NextEpoch() != 2 {
		t.Fatalf("next epoch of a new room = %d, want 2", room.NextEpoch())
	}
	if _, err := st.RekeyTo(ctx, id, 1, 5, map[string][]byte{owner: []byte("x")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey to a wrong epoch = %v, want ErrConflict", err)
	}
	// A claim that lost (membership mismatch) leaves its number unused.
	if _, err := st.RekeyTo(ctx, id, 1, 2, map[string][]byte{owner: []byte("x"), newUserKey(t): []byte("y")}); !errors.Is(err, kvstore.ErrConflict) {
		t.Fatalf("rekey with a non-member = %v, want ErrConflict", err)
	}
	room, err = st.GetRoom(ctx, id)
	if err != nil || room.Epoch != 1 || room.NextEpoch() != 3 {
		t.Fatalf("after a lost claim: epoch %d next %d (%v); want 1 and 3", room.Epoch, room.NextEpoch(), err)
	}
	epoch, err := st.RekeyTo(ctx, id, 1, 3, map[string][]byte{owner: []byte("k3")})
	if err != nil || epoch != 3 {
		t.Fatalf("rekey to next epoch = %d, %v; want 3", epoch, err)
	}
	if _, key, err := st.LatestRoomKey(ctx, id, owner); err != nil || string(key) != "k3" {
		t.Fatalf("latest key = %q, %v", key, err)
	}
}

// TestCounts: CountMembers and CountRoomsForEndpoint count current
// records only (not deleted ones), also past what one direct get returns.
func TestCounts(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t, kvstore.Config{Replicas: 1, Memory: true})
	owner, bob := newUserKey(t), newUserKey(t)
	id := subjects.NewRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeCleartext, Owner: owner}, nil); err != nil {
		t.Fatal(err)
	}
	other := subjects.NewRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: other, Mode: subjects.ModeCleartext, Owner: owner}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AddMember(ctx, id, bob, subjects.RoleMember, 0, nil); err != nil {
		t.Fatal(err)
	}
	count := func(want int) {
		t.Helper()
		if n, err := st.CountMembers(ctx, id); err != nil || n != want {
			t.Fatalf("CountMembers = %d, %v; want %d", n, err, want)
		}
	}
	count(2)
	if n, err := st.CountRoomsForEndpoint(ctx, owner); err != nil || n != 2 {
		t.Fatalf("CountRoomsForEndpoint(owner) = %d, %v; want 2", n, err)
	}
	if err := st.RemoveMember(ctx, id, bob); err != nil {
		t.Fatal(err)
	}
	count(1)
	if n, err := st.CountRoomsForEndpoint(ctx, bob); err != nil || n != 0 {
		t.Fatalf("CountRoomsForEndpoint(bob) after removal = %d, %v; want 0", n, err)
	}
	// Past one multi-last direct get (1024 results).
	for range 1030 {
		if _, err := st.AddMember(ctx, id, newUserKey(t), subjects.RoleMember, 0, nil); err != nil {
			t.Fatal(err)
		}
	}
	count(1031)

	if _, err := st.CountMembers(ctx, subjects.NewRoomID()); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("CountMembers(unknown room) = %v, want ErrNotFound", err)
	}
	if _, err := st.CountMembers(ctx, "r.>"); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("CountMembers(wildcard) = %v, want ErrInvalid", err)
	}
	if _, err := st.CountRoomsForEndpoint(ctx, "U*"); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("CountRoomsForEndpoint(wildcard) = %v, want ErrInvalid", err)
	}
}
