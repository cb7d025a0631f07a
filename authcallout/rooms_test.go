package authcallout_test

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// The callout never reads a user's rooms: what it issues, and how long it
// takes, is the same for a member of a thousand rooms as for a member of
// none.

// serverInboxAll is where the callout answers the servers (in account
// AUTH): "$SYS._INBOX.>".
const serverInboxAll = "$SYS._INBOX.>"

// issuedTap follows the callout's answers to the server, as a user of
// account AUTH with every right sees them.
type issuedTap struct {
	sub *nats.Subscription
}

// tapIssued starts following the callout's answers; the tap ends with the
// test.
func (b *kickBus) tapIssued(t testing.TB) *issuedTap {
	t.Helper()
	nc := b.dial(b.authTester, "tap")
	sub, err := nc.SubscribeSync(serverInboxAll)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &issuedTap{sub: sub}
}

// connect connects id to the bus through the callout, closes the
// connection, and returns the user JWT the callout issued for it.
func (tap *issuedTap) connect(t testing.TB, url string, id *identity.Identity) string {
	t.Helper()
	nc, err := nats.Connect(url, nodetest.ConnectOptions(id)...)
	if err != nil {
		t.Fatalf("connect %s: %v", id.PublicKey(), err)
	}
	nc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg, err := tap.sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no admission of %s seen: %v", id.PublicKey(), err)
		}
		resp, err := jwt.DecodeAuthorizationResponseClaims(string(msg.Data))
		if err != nil || resp.Jwt == "" {
			continue // not an admission (or not the callout's)
		}
		uc, err := jwt.DecodeUserClaims(resp.Jwt)
		if err != nil {
			t.Fatalf("the callout issued an undecodable user JWT: %v", err)
		}
		if uc.Name == id.PublicKey() {
			return resp.Jwt
		}
	}
}

// joinRooms makes member a member of n new cleartext rooms of owner's,
// through the store (the records the rooms service writes), a few at a
// time.
func joinRooms(t testing.TB, st *kvstore.Store, owner, member *identity.Identity, n int) {
	t.Helper()
	ctx := context.Background()
	const parallel = 8
	errs := make([]error, parallel)
	var wg sync.WaitGroup
	for w := range parallel {
		wg.Go(func() {
			for i := w; i < n; i += parallel {
				id, salt := subjects.NewRoomID(owner.PublicKey(), subjects.ModeCleartext)
				r, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeCleartext, Owner: owner.PublicKey()}, kvstore.SealedKey{})
				if err == nil {
					_, err = st.AddMember(ctx, r.ID, member.PublicKey(), subjects.RoleMember, 0, kvstore.SealedKey{})
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("join %d rooms: %v", n, err)
	}
	if got, err := st.CountRoomsForEndpoint(ctx, member.PublicKey()); err != nil || got != n {
		t.Fatalf("member of %d rooms (%v), want %d", got, err, n)
	}
}

// TestJWTSizeIndependentOfRooms: the user JWT the callout issues when a
// member of 1,000 rooms connects is exactly as large as that of a user in
// none,
// and grants the same permissions but for the user's own key: its rooms
// appear nowhere in it.
func TestJWTSizeIndependentOfRooms(t *testing.T) {
	b := startKickBus(t)
	tap := b.tapIssued(t)
	owner := addUser(t, b.store, "owner")
	member := addUser(t, b.store, "member")
	loner := addUser(t, b.store, "loner")
	const rooms = 1000
	joinRooms(t, b.store, owner, member, rooms)

	memberJWT, lonerJWT := tap.connect(t, b.url, member), tap.connect(t, b.url, loner)
	t.Logf("user JWT: %d bytes for a member of %d rooms, %d for a member of none", len(memberJWT), rooms, len(lonerJWT))
	if len(memberJWT) != len(lonerJWT) {
		t.Fatalf("user JWT of %d bytes for a member of %d rooms, %d for a member of none", len(memberJWT), rooms, len(lonerJWT))
	}
	for _, tc := range []struct {
		id    *identity.Identity
		token string
	}{{member, memberJWT}, {loner, lonerJWT}} {
		uc, err := jwt.DecodeUserClaims(tc.token)
		if err != nil {
			t.Fatal(err)
		}
		want, err := authcallout.Permissions(tc.id.PublicKey(), false)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(uc.Permissions, want) {
			t.Errorf("%s granted %+v, want %+v", uc.Name, uc.Permissions, want)
		}
	}
}
