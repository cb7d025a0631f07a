package kvstore_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/tests/natstest"
)

// userCases are the store suite's cases of this file (see TestStore).
var userCases = []storeCase{
	{"Users", testUsers},
	{"InvalidUserKeysStoreNothing", testInvalidUserKeysStoreNothing},
	{"ListUsersPage", testListUsersPage},
}

func testUsers(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	admin := natstest.NewUserKey(t)
	plain := natstest.NewUserKey(t)

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
	}{{admin, true, true}, {plain, true, false}, {natstest.NewUserKey(t), false, false}} {
		ok, err := isAuthorized(ctx, st, tc.pub)
		if err != nil || ok != tc.authorized {
			t.Errorf("IsAuthorized(%s) = %v, %v; want %v", tc.pub, ok, err, tc.authorized)
		}
		ok, err = hasAdmin(ctx, st, tc.pub)
		if err != nil || ok != tc.adm {
			t.Errorf("HasAdmin(%s) = %v, %v; want %v", tc.pub, ok, err, tc.adm)
		}
	}

	// The leader read agrees with the direct read, and misses the same way.
	lead, err := st.GetUserFromLeader(ctx, strings.ToLower(admin))
	if err != nil || lead.Pub != admin || !lead.Admin || !lead.AddedAt.Equal(got.AddedAt) {
		t.Fatalf("GetUserFromLeader = %+v, %v; want %+v", lead, err, got)
	}
	if _, err := st.GetUserFromLeader(ctx, natstest.NewUserKey(t)); !errors.Is(err, kvstore.ErrNotFound) {
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
	if ok, _ := isAuthorized(ctx, st, admin); ok {
		t.Fatal("revoked user still authorized")
	}
	if u, err := st.GetUserFromLeader(ctx, admin); err != nil || !u.Revoked() {
		t.Fatalf("leader read after revoke = %+v, %v; want revoked", u, err)
	}
	if ok, _ := hasAdmin(ctx, st, admin); ok {
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

	issued := time.Unix(1767225600, 0)
	v1 := kvstore.EncKeyBinding{Key: []byte("pk"), Sig: []byte("sig"), Version: 1, IssuedAt: issued}
	if _, err := st.SetEncryptionKey(ctx, plain, v1); err != nil {
		t.Fatalf("set key: %v", err)
	}
	if got, _ := st.GetUser(ctx, plain); string(got.EncKey) != "pk" || string(got.EncKeySig) != "sig" || got.EncKeyVersion != 1 || !got.EncKeyIssuedAt.Equal(issued) {
		t.Fatalf("encryption key not stored: %+v", got)
	}
	// The same binding again changes nothing; an older or equal version
	// of another key is stale; a newer one replaces it.
	if got, err := st.SetEncryptionKey(ctx, plain, v1); err != nil || got.EncKeyVersion != 1 {
		t.Fatalf("same binding again = %+v, %v", got, err)
	}
	for _, stale := range []kvstore.EncKeyBinding{
		{Key: []byte("other"), Sig: []byte("sig2"), Version: 1, IssuedAt: issued},
		{Key: []byte("pk"), Sig: []byte("sig2"), Version: 1, IssuedAt: issued},
	} {
		if _, err := st.SetEncryptionKey(ctx, plain, stale); !errors.Is(err, kvstore.ErrStaleBinding) || !errors.Is(err, kvstore.ErrConflict) {
			t.Fatalf("stale binding %+v = %v, want ErrStaleBinding", stale, err)
		}
	}
	v2 := kvstore.EncKeyBinding{Key: []byte("pk2"), Sig: []byte("sig2"), Version: 2, IssuedAt: issued.Add(time.Hour)}
	if got, err := st.SetEncryptionKey(ctx, plain, v2); err != nil || string(got.EncKey) != "pk2" || got.EncKeyVersion != 2 {
		t.Fatalf("newer binding = %+v, %v", got, err)
	}
	if _, err := st.SetEncryptionKey(ctx, plain, v1); !errors.Is(err, kvstore.ErrStaleBinding) {
		t.Fatalf("rolling back to version 1 = %v, want ErrStaleBinding", err)
	}
	if got, _ := st.GetUser(ctx, plain); string(got.EncKey) != "pk2" {
		t.Fatalf("a refused binding changed the record: %+v", got)
	}
	for _, bad := range []kvstore.EncKeyBinding{
		{Sig: []byte("sig"), Version: 3},
		{Key: []byte("k"), Version: 3},
		{Key: []byte("k"), Sig: []byte("sig")},
	} {
		if _, err := st.SetEncryptionKey(ctx, plain, bad); !errors.Is(err, kvstore.ErrInvalid) {
			t.Fatalf("binding %+v = %v, want ErrInvalid", bad, err)
		}
	}
}

func testInvalidUserKeysStoreNothing(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	akp, _ := nkeys.CreateAccount()
	accountPub, _ := akp.PublicKey()
	for _, bad := range []string{"", " ", "not-a-key", accountPub, "U" + strings.Repeat("A", 55), "UABC.DEF", "*", ">"} {
		if _, err := st.AddUser(ctx, kvstore.User{Pub: bad}); !errors.Is(err, kvstore.ErrInvalid) {
			t.Errorf("AddUser(%q) = %v, want ErrInvalid", bad, err)
		}
		if _, err := isAuthorized(ctx, st, bad); err == nil {
			t.Errorf("IsAuthorized(%q) gave no error", bad)
		}
	}
	users, err := st.ListUsers(ctx)
	if err != nil || len(users) != 0 {
		t.Fatalf("users after invalid adds = %v, %v; want none", users, err)
	}
}

func testListUsersPage(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	var want []string
	for range 7 {
		u, err := st.AddUser(ctx, kvstore.User{Pub: natstest.NewUserKey(t)})
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
