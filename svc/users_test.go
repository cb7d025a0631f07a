package svc_test

import (
	"bytes"
	"slices"
	"testing"

	"github.com/unibus/unibus/subjects"
)

func TestUsersAdd(t *testing.T) {
	e := newEnv(t)
	dave := e.newIdentity(t, "dave")

	before := e.snapshot(t)
	wantError(t, e.alice.request(t, subjects.UsersAdd, subjects.AddUserRequest{Pub: dave.pub}), subjects.CodeForbidden, "only administrators may add users")
	wantError(t, e.admin.request(t, subjects.UsersAdd, subjects.AddUserRequest{Pub: "not-a-key"}), subjects.CodeBadRequest, "pub", "not-a-key")
	wantError(t, e.admin.request(t, subjects.UsersAdd, subjects.AddUserRequest{}), subjects.CodeBadRequest, "pub is required")
	wantError(t, e.admin.request(t, subjects.UsersAdd, subjects.AddUserRequest{Pub: dave.pub, Name: "a\x00b"}), subjects.CodeBadRequest, "control character")
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
	if err := subjects.VerifyEncKeyBinding(got.Pub, got.EncKey, got.EncKeySig); err != nil {
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
	call[subjects.ListUsersResponse](t, e.admin, subjects.UsersList, []byte("{}"))
	wantError(t, e.alice.request(t, subjects.UsersList, nil), subjects.CodeForbidden, "only administrators may list users")
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
	sig, err := subjects.SignEncKeyBinding(e.alice.kp, key)
	if err != nil {
		t.Fatal(err)
	}
	bobSig, err := subjects.SignEncKeyBinding(e.bob.kp, key)
	if err != nil {
		t.Fatal(err)
	}

	before := e.snapshot(t)
	for _, tc := range []struct {
		name string
		req  subjects.SetKeyRequest
		want string
	}{
		{"signed by someone else", subjects.SetKeyRequest{EncKey: key, EncKeySig: bobSig}, "enc_key_sig does not verify"},
		{"signature of another key", subjects.SetKeyRequest{EncKey: key[1:], EncKeySig: sig}, "enc_key_sig does not verify"},
		{"garbage signature", subjects.SetKeyRequest{EncKey: key, EncKeySig: []byte("x")}, "enc_key_sig does not verify"},
		{"no signature", subjects.SetKeyRequest{EncKey: key}, "enc_key_sig is required"},
		{"no key", subjects.SetKeyRequest{EncKeySig: sig}, "enc_key is required"},
		{"huge key", subjects.SetKeyRequest{EncKey: make([]byte, 9000), EncKeySig: sig}, "over the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.alice.request(t, subjects.UsersSetKey, tc.req), subjects.CodeBadRequest, tc.want)
		})
	}
	e.unchanged(t, before)

	got := call[subjects.UserInfo](t, e.alice, subjects.UsersSetKey, subjects.SetKeyRequest{EncKey: key, EncKeySig: sig})
	if !bytes.Equal(got.EncKey, key) || !bytes.Equal(got.EncKeySig, sig) {
		t.Fatalf("setkey = %+v", got)
	}
	read := call[subjects.UserInfo](t, e.bob, subjects.UsersGet, subjects.GetUserRequest{Pub: e.alice.pub})
	if !bytes.Equal(read.EncKey, key) {
		t.Errorf("the new key was not stored")
	}
}
