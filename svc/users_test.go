package svc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
)

func TestUsersAdd(t *testing.T) {
	e := newEnv(t)
	dave := e.newIdentity(t, "dave")

	before := e.snapshot(t)
	wantError(t, e.alice.request(t, subjects.UsersAdd, subjects.AddUserRequest{Pub: dave.pub}), subjects.CodeForbidden, "only administrators may add users")
	wantError(t, e.admin.request(t, subjects.UsersAdd, subjects.AddUserRequest{Pub: "not-a-key"}), subjects.CodeBadRequest, "pub", "not-a-key")
	wantError(t, e.admin.request(t, subjects.UsersAdd, subjects.AddUserRequest{}), subjects.CodeBadRequest, "pub is required")
	wantError(t, e.admin.request(t, subjects.UsersAdd, subjects.AddUserRequest{Pub: dave.pub, Name: "a\x00b"}), subjects.CodeBadRequest, "control character")
	// Names that would pass for others on screen: zero-width and
	// bidirectional characters.
	for _, name := range []string{"o\u200bps", "ops\u200d", "\u202egnp.exe", "a\u2066b\u2069", "\ufeffops"} {
		wantError(t, e.admin.request(t, subjects.UsersAdd, subjects.AddUserRequest{Pub: dave.pub, Name: name}), subjects.CodeBadRequest, "invisible format character")
		wantError(t, e.alice.request(t, subjects.RoomsCreate, subjects.CreateRoomRequest{Name: name, Mode: subjects.ModeCleartext}), subjects.CodeBadRequest, "invisible format character")
	}
	seed, _ := dave.kp.Seed()
	r := e.admin.request(t, subjects.UsersAdd, subjects.AddUserRequest{Pub: string(seed)})
	wantError(t, r, subjects.CodeBadRequest, "seed")
	if bytes.Contains(r.Data, seed) {
		t.Errorf("the error echoes a seed: %s", r.Data)
	}
	e.unchanged(t, before)

	got := call[subjects.UserInfo](t, e.admin, subjects.UsersAdd, subjects.AddUserRequest{Pub: dave.pub, Name: "dave", Admin: true})
	if got.Pub != dave.pub || got.Name != "dave" || !got.Admin || got.Revoked || got.AddedAt.IsZero() || got.EncKey != nil {
		t.Errorf("added %+v", got)
	}
	wantError(t, e.admin.request(t, subjects.UsersAdd, subjects.AddUserRequest{Pub: dave.pub}), subjects.CodeConflict, dave.pub, "already registered")

	// The new admin can act as one at once.
	e.connect(t, dave)
	eve := e.newIdentity(t, "eve")
	call[subjects.UserInfo](t, dave, subjects.UsersAdd, subjects.AddUserRequest{Pub: eve.pub})
}

func TestUsersGet(t *testing.T) {
	e := newEnv(t)
	// Any registered user reads any user, with the key to seal to.
	got := call[subjects.UserInfo](t, e.bob, subjects.UsersGet, subjects.GetUserRequest{Pub: e.alice.pub})
	if got.Pub != e.alice.pub || !bytes.Equal(got.EncKey, e.alice.encKey) {
		t.Fatalf("get alice = %+v", got)
	}
	if err := subjects.VerifyEncKeyBinding(got.Pub, got.EncKey, got.EncKeyVersion, got.EncKeyIssuedAt, got.EncKeySig); err != nil {
		t.Errorf("the binding read back does not verify: %v", err)
	}
	missing := e.newIdentity(t, "missing")
	wantError(t, e.bob.request(t, subjects.UsersGet, subjects.GetUserRequest{Pub: missing.pub}), subjects.CodeNotFound, "user "+missing.pub+" not found")
	wantError(t, e.bob.request(t, subjects.UsersGet, subjects.GetUserRequest{Pub: "Uxyz"}), subjects.CodeBadRequest, "pub")
}

func TestUsersList(t *testing.T) {
	e := newEnv(t)
	got := call[subjects.ListUsersResponse](t, e.admin, subjects.UsersList, nil)
	var pubs []string
	for _, u := range got.Users {
		pubs = append(pubs, u.Pub)
	}
	if len(pubs) != 4 || !slices.IsSorted(pubs) {
		t.Fatalf("list = %v, want 4 users sorted by key", pubs)
	}
	for _, u := range []*user{e.admin, e.alice, e.bob, e.carol} {
		if !slices.Contains(pubs, u.pub) {
			t.Fatalf("list = %v, missing %s", pubs, u.name)
		}
	}
	if got.Next != "" {
		t.Errorf("one page holds all 4 users, yet next = %q", got.Next)
	}
	call[subjects.ListUsersResponse](t, e.admin, subjects.UsersList, []byte("{}"))
	wantError(t, e.alice.request(t, subjects.UsersList, nil), subjects.CodeForbidden, "only administrators may list users")
}

func TestUsersListPages(t *testing.T) {
	e := newEnv(t)
	all := call[subjects.ListUsersResponse](t, e.admin, subjects.UsersList, nil).Users

	// Pages of 3 of the 4 users: the first ends with next = its last key,
	// the second holds the rest and no next.
	first := call[subjects.ListUsersResponse](t, e.admin, subjects.UsersList, subjects.ListUsersRequest{Limit: 3})
	if len(first.Users) != 3 || first.Next != first.Users[2].Pub {
		t.Fatalf("first page = %d users, next %q; want 3 and the third's key", len(first.Users), first.Next)
	}
	second := call[subjects.ListUsersResponse](t, e.admin, subjects.UsersList, subjects.ListUsersRequest{After: first.Next, Limit: 3})
	if len(second.Users) != 1 || second.Users[0].Pub != all[3].Pub || second.Next != "" {
		t.Fatalf("second page = %+v; want only %s and no next", second, all[3].Pub)
	}
	// A lowercase cursor is normalized, as every key is.
	if got := call[subjects.ListUsersResponse](t, e.admin, subjects.UsersList, subjects.ListUsersRequest{After: strings.ToLower(all[2].Pub)}); len(got.Users) != 1 || got.Users[0].Pub != all[3].Pub {
		t.Fatalf("page after a lowercase cursor = %+v; want only %s", got.Users, all[3].Pub)
	}

	before := e.snapshot(t)
	for _, tc := range []struct {
		body any
		want []string
	}{
		{subjects.ListUsersRequest{Limit: -1}, []string{"limit must be between 1 and 1000, not -1"}},
		{subjects.ListUsersRequest{Limit: subjects.MaxListUsersLimit + 1}, []string{"limit must be between 1 and 1000, not 1001"}},
		{subjects.ListUsersRequest{After: "Uxyz"}, []string{"after"}},
		{subjects.ListUsersRequest{After: "*"}, []string{"after"}},
		{[]byte(`{"after":"` + all[0].Pub + `","page":2}`), []string{"page"}},
	} {
		wantError(t, e.admin.request(t, subjects.UsersList, tc.body), subjects.CodeBadRequest, tc.want...)
	}
	wantError(t, e.alice.request(t, subjects.UsersList, subjects.ListUsersRequest{Limit: 1}), subjects.CodeForbidden, "only administrators may list users")
	e.unchanged(t, before)
}

// TestUsersListPageFitsMaxPayload lists users with encryption keys through
// a server whose max_payload holds fewer of them than the limit asks for:
// each page stops short of max_payload and says where to go on, and the
// pages hold every user once.
func TestUsersListPageFitsMaxPayload(t *testing.T) {
	const maxPayload = 1 << 20 // nats-server's default
	srv := natstest.RunServer(t, func(c *embedded.Config) {
		c.Customize = func(o *server.Options) error { o.MaxPayload = maxPayload; return nil }
	})
	nc, js := natstest.JetStream(t, srv.ClientURL())
	ctx := context.Background()
	store, err := kvstore.Open(ctx, js, kvstore.Config{Replicas: 1, Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := svc.Start(ctx, svc.Config{Store: store, Conn: nc, AuthMode: svc.AuthOff, MaxBundleBytes: maxPayload, MaxMembersPerRoom: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })

	// An MLKEM768-X25519 public key is 1,216 bytes: about 2 KiB a user in
	// JSON, so some 500 fit in a reply of 1 MiB.
	encKey, sig := bytes.Repeat([]byte{7}, 1216), bytes.Repeat([]byte{9}, 64)
	var want []string
	for i := range 700 {
		pub := nodetest.NewIdentity(t).PublicKey()
		if _, err := store.AddUser(ctx, kvstore.User{Pub: pub, Admin: i == 0}); err != nil {
			t.Fatal(err)
		}
		if _, err := store.SetEncryptionKey(ctx, pub, kvstore.EncKeyBinding{Key: encKey, Sig: sig, Version: 1}); err != nil {
			t.Fatal(err)
		}
		want = append(want, pub)
	}
	admin := want[0] // AuthOff: the caller is whoever Unibus-Pub names
	slices.Sort(want)

	client := natstest.Connect(t, srv.ClientURL(), nats.CustomInboxPrefix("_INBOX."+admin))
	var got []string
	req := subjects.ListUsersRequest{Limit: subjects.MaxListUsersLimit}
	for pages := 1; ; pages++ {
		body, _ := json.Marshal(req)
		msg := nats.NewMsg(subjects.UsersList)
		msg.Data = body
		msg.Header.Set(subjects.HeaderPub, admin)
		reply, err := client.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
			t.Fatalf("page %d: %s %s", pages, code, reply.Header.Get(micro.ErrorHeader))
		}
		if len(reply.Data) > maxPayload {
			t.Fatalf("page %d is %d bytes, over max_payload", pages, len(reply.Data))
		}
		var page subjects.ListUsersResponse
		if err := json.Unmarshal(reply.Data, &page); err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Users {
			got = append(got, u.Pub)
		}
		if page.Next == "" {
			if pages < 2 {
				t.Fatalf("700 users of 2 KiB came in one page of %d bytes", len(reply.Data))
			}
			break
		}
		if page.Next != got[len(got)-1] {
			t.Fatalf("page %d: next %q is not its last user %q", pages, page.Next, got[len(got)-1])
		}
		req.After = page.Next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged %d users, want the %d registered, once each and in order", len(got), len(want))
	}
}

func TestUsersRevoke(t *testing.T) {
	e := newEnv(t)
	wantError(t, e.alice.request(t, subjects.UsersRevoke, subjects.RevokeUserRequest{Pub: e.bob.pub}), subjects.CodeForbidden, "only administrators may revoke users")
	missing := e.newIdentity(t, "missing")
	wantError(t, e.admin.request(t, subjects.UsersRevoke, subjects.RevokeUserRequest{Pub: missing.pub}), subjects.CodeNotFound, missing.pub)

	got := call[subjects.UserInfo](t, e.admin, subjects.UsersGet, subjects.GetUserRequest{Pub: e.bob.pub})
	if got.Revoked || got.RevokedAt != nil {
		t.Fatalf("before revocation: %+v", got)
	}
	e.revoke(t, e.bob, e.alice)
	got = call[subjects.UserInfo](t, e.admin, subjects.UsersGet, subjects.GetUserRequest{Pub: e.bob.pub})
	if !got.Revoked || got.RevokedAt == nil {
		t.Fatalf("revoked = %+v", got)
	}
	// Revoked users are refused from their next request on, and revoking
	// again is harmless.
	wantError(t, e.bob.request(t, subjects.RoomsMine, nil), subjects.CodeUnauthenticated, "revoked")
	call[subjects.UserInfo](t, e.admin, subjects.UsersRevoke, subjects.RevokeUserRequest{Pub: e.bob.pub})

	// The last administrator stays; with a second one, either may go,
	// themselves included.
	before := e.snapshot(t)
	wantError(t, e.admin.request(t, subjects.UsersRevoke, subjects.RevokeUserRequest{Pub: e.admin.pub}), subjects.CodeConflict, "last administrator")
	e.unchanged(t, before)
	second := e.newIdentity(t, "second")
	call[subjects.UserInfo](t, e.admin, subjects.UsersAdd, subjects.AddUserRequest{Pub: second.pub, Admin: true})
	e.revoke(t, e.admin, e.alice) // by itself
	wantError(t, e.admin.request(t, subjects.UsersList, nil), subjects.CodeUnauthenticated, "revoked")
}

func TestUsersSetKey(t *testing.T) {
	e := newEnv(t)
	key := randomBytes(t, 1216)
	// alice registered version 1 when the environment started.
	issued := time.Now().Truncate(time.Second)
	sig, err := subjects.SignEncKeyBinding(e.alice.kp, key, 2, issued)
	if err != nil {
		t.Fatal(err)
	}
	bobSig, err := subjects.SignEncKeyBinding(e.bob.kp, key, 2, issued)
	if err != nil {
		t.Fatal(err)
	}
	future := issued.Add(time.Hour)
	futureSig, err := subjects.SignEncKeyBinding(e.alice.kp, key, 2, future)
	if err != nil {
		t.Fatal(err)
	}
	v := func(r subjects.SetKeyRequest) subjects.SetKeyRequest {
		r.EncKeyVersion, r.EncKeyIssuedAt = 2, issued
		return r
	}

	before := e.snapshot(t)
	for _, tc := range []struct {
		name string
		req  subjects.SetKeyRequest
		want string
	}{
		{"signed by someone else", v(subjects.SetKeyRequest{EncKey: key, EncKeySig: bobSig}), "enc_key_sig does not verify"},
		{"signature of another key", v(subjects.SetKeyRequest{EncKey: key[1:], EncKeySig: sig}), "enc_key_sig does not verify"},
		{"garbage signature", v(subjects.SetKeyRequest{EncKey: key, EncKeySig: []byte("x")}), "enc_key_sig does not verify"},
		{"no signature", v(subjects.SetKeyRequest{EncKey: key}), "enc_key_sig is required"},
		{"no key", v(subjects.SetKeyRequest{EncKeySig: sig}), "enc_key is required"},
		{"huge key", v(subjects.SetKeyRequest{EncKey: make([]byte, 9000), EncKeySig: sig}), "over the limit"},
		{"no version", subjects.SetKeyRequest{EncKey: key, EncKeySig: sig, EncKeyIssuedAt: issued}, "enc_key_version is required"},
		{"no time", subjects.SetKeyRequest{EncKey: key, EncKeySig: sig, EncKeyVersion: 2}, "enc_key_issued_at is required"},
		{"another version than signed", subjects.SetKeyRequest{EncKey: key, EncKeySig: sig, EncKeyVersion: 3, EncKeyIssuedAt: issued}, "enc_key_sig does not verify"},
		{"another time than signed", subjects.SetKeyRequest{EncKey: key, EncKeySig: sig, EncKeyVersion: 2, EncKeyIssuedAt: issued.Add(time.Second)}, "enc_key_sig does not verify"},
		{"from the future", subjects.SetKeyRequest{EncKey: key, EncKeySig: futureSig, EncKeyVersion: 2, EncKeyIssuedAt: future}, "in the future"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.alice.request(t, subjects.UsersSetKey, tc.req), subjects.CodeBadRequest, tc.want)
		})
	}
	e.unchanged(t, before)

	// An older binding (alice's version 1, replayed) is refused: 409.
	old := call[subjects.UserInfo](t, e.alice, subjects.UsersGet, subjects.GetUserRequest{Pub: e.alice.pub})
	replay := subjects.SetKeyRequest{EncKey: key, EncKeySig: old.EncKeySig, EncKeyVersion: old.EncKeyVersion, EncKeyIssuedAt: old.EncKeyIssuedAt}
	wantError(t, e.alice.request(t, subjects.UsersSetKey, replay), subjects.CodeBadRequest, "enc_key_sig does not verify")
	oldSig, err := subjects.SignEncKeyBinding(e.alice.kp, key, 1, issued)
	if err != nil {
		t.Fatal(err)
	}
	stale := subjects.SetKeyRequest{EncKey: key, EncKeySig: oldSig, EncKeyVersion: 1, EncKeyIssuedAt: issued}
	wantError(t, e.alice.request(t, subjects.UsersSetKey, stale), subjects.CodeConflict, "is not above your registered binding")
	e.unchanged(t, before)

	got := call[subjects.UserInfo](t, e.alice, subjects.UsersSetKey, v(subjects.SetKeyRequest{EncKey: key, EncKeySig: sig}))
	if !bytes.Equal(got.EncKey, key) || !bytes.Equal(got.EncKeySig, sig) || got.EncKeyVersion != 2 || !got.EncKeyIssuedAt.Equal(issued) {
		t.Fatalf("setkey = %+v", got)
	}
	// The same binding again is a no-op, not a conflict.
	call[subjects.UserInfo](t, e.alice, subjects.UsersSetKey, v(subjects.SetKeyRequest{EncKey: key, EncKeySig: sig}))
	read := call[subjects.UserInfo](t, e.bob, subjects.UsersGet, subjects.GetUserRequest{Pub: e.alice.pub})
	if !bytes.Equal(read.EncKey, key) {
		t.Errorf("the new key was not stored")
	}
}

// TestUsersGetShowsOthersOnlyWhatSealingNeeds: a user learns another's
// name and encryption key, not whether it is an administrator, revoked, or
// when it was added; the user itself and administrators see everything.
func TestUsersGetShowsOthersOnlyWhatSealingNeeds(t *testing.T) {
	e := newEnv(t)
	get := func(from, of *user) subjects.UserInfo {
		t.Helper()
		return call[subjects.UserInfo](t, from, subjects.UsersGet, subjects.GetUserRequest{Pub: of.pub})
	}
	others := get(e.alice, e.admin)
	if others.Admin || !others.AddedAt.IsZero() || others.Revoked || others.RevokedAt != nil {
		t.Errorf("alice sees the administrator as %+v: admin flag or times leaked", others)
	}
	if others.Pub != e.admin.pub || len(others.EncKey) == 0 || len(others.EncKeySig) == 0 {
		t.Errorf("alice cannot seal to the administrator: %+v", others)
	}
	if self := get(e.alice, e.alice); self.AddedAt.IsZero() {
		t.Errorf("alice's own record lacks its times: %+v", self)
	}
	if full := get(e.admin, e.admin); !full.Admin || full.AddedAt.IsZero() {
		t.Errorf("the administrator's view lacks the flag or times: %+v", full)
	}
	e.revoke(t, e.carol, e.bob)
	if seen := get(e.alice, e.carol); seen.Revoked || seen.RevokedAt != nil {
		t.Errorf("alice sees carol's revocation: %+v", seen)
	}
	if seen := get(e.admin, e.carol); !seen.Revoked || seen.RevokedAt == nil {
		t.Errorf("the administrator does not see carol's revocation: %+v", seen)
	}
}
