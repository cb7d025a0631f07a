package svc_test

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

func TestSignedRequests(t *testing.T) {
	e := newEnv(t)
	stranger := e.stranger(t)
	revoked := e.register(t, "revoked")
	e.revoke(t, revoked, e.alice)

	mine := func(t *testing.T, r *nats.Msg) {
		t.Helper()
		got := decode[subjects.MineResponse](t, r)
		if got.Rooms == nil || len(got.Rooms) != 0 {
			t.Fatalf("mine = %+v, want no rooms", got)
		}
	}
	for _, tc := range []struct {
		name string
		from *user
		opts []reqOption
		want []string // empty: success
	}{
		{name: "signed and registered", from: e.alice},
		{name: "unregistered", from: stranger, want: []string{stranger.pub, "not a registered user"}},
		{name: "revoked", from: revoked, want: []string{"revoked"}},
		{name: "too old", from: e.alice, opts: []reqOption{signedAt(time.Now().Add(-3 * time.Minute))}, want: []string{"clock"}},
		{name: "from the future", from: e.alice, opts: []reqOption{signedAt(time.Now().Add(3 * time.Minute))}, want: []string{"clock"}},
		{name: "within the skew", from: e.alice, opts: []reqOption{signedAt(time.Now().Add(-90 * time.Second))}},
		{name: "tampered body", from: e.alice, opts: []reqOption{tampered(func(m *nats.Msg) { m.Data = []byte(`{ }`) })}, want: []string{"signature does not verify"}},
		{name: "signed for another subject", from: e.alice, opts: []reqOption{tampered(func(m *nats.Msg) {
			h, _ := subjects.SignRequest(e.alice.kp, subjects.RoomsGet, m.Data, time.Now())
			m.Header = h
		})}, want: []string{"signature does not verify"}},
		{name: "signed by another key", from: e.alice, opts: []reqOption{signedBy(e.bob.kp), tampered(func(m *nats.Msg) { m.Header.Set(subjects.HeaderPub, e.alice.pub) })}, want: []string{"signature does not verify"}},
		{name: "no headers", from: e.alice, opts: []reqOption{unsigned(nil)}, want: []string{"not signed"}},
		{name: "pub only", from: e.alice, opts: []reqOption{unsigned(nats.Header{subjects.HeaderPub: {e.alice.pub}})}, want: []string{"not signed"}},
		{name: "no signature", from: e.alice, opts: []reqOption{tampered(func(m *nats.Msg) { m.Header.Del(subjects.HeaderSig) })}, want: []string{"not signed"}},
		{name: "no nonce", from: e.alice, opts: []reqOption{tampered(func(m *nats.Msg) { m.Header.Del(subjects.HeaderNonce) })}, want: []string{"not signed"}},
		{name: "no timestamp", from: e.alice, opts: []reqOption{tampered(func(m *nats.Msg) { m.Header.Del(subjects.HeaderTs) })}, want: []string{"not signed"}},
		{name: "malformed timestamp", from: e.alice, opts: []reqOption{tampered(func(m *nats.Msg) { m.Header.Set(subjects.HeaderTs, "soon") })}, want: []string{"malformed signature headers"}},
		{name: "repeated header", from: e.alice, opts: []reqOption{tampered(func(m *nats.Msg) { m.Header.Add(subjects.HeaderSig, m.Header.Get(subjects.HeaderSig)) })}, want: []string{"malformed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.from.request(t, subjects.RoomsMine, nil, tc.opts...)
			if len(tc.want) == 0 {
				mine(t, r)
				return
			}
			wantError(t, r, subjects.CodeUnauthenticated, tc.want...)
		})
	}

	t.Run("replayed nonce", func(t *testing.T) {
		m := e.alice.msg(t, subjects.RoomsMine, nil)
		mine(t, e.alice.send(t, m))
		wantError(t, e.alice.send(t, m), subjects.CodeUnauthenticated, "replay")
		// The same nonce under a fresh signature is still a replay.
		again := e.alice.msg(t, subjects.RoomsMine, []byte("{}"), tampered(func(n *nats.Msg) {
			nonce, ts := m.Header.Get(subjects.HeaderNonce), n.Header.Get(subjects.HeaderTs)
			sig, err := e.alice.kp.Sign(subjects.CanonicalRequest(n.Subject, ts, nonce, n.Data))
			if err != nil {
				t.Fatal(err)
			}
			n.Header.Set(subjects.HeaderNonce, nonce)
			n.Header.Set(subjects.HeaderSig, base64.RawURLEncoding.EncodeToString(sig))
		}))
		wantError(t, e.alice.send(t, again), subjects.CodeUnauthenticated, "replay")
	})

	// Nothing above registered, revoked or created anything.
	if got := call[subjects.ListUsersResponse](t, e.admin, subjects.UsersList, nil); len(got.Users) != 5 {
		t.Errorf("%d users, want 5", len(got.Users))
	}
}

// TestReplayToSecondInstance replays a request, captured on its way to one
// instance, to another instance on another connection: the nonce is shared
// through the store, so the replay fails there too.
func TestReplayToSecondInstance(t *testing.T) {
	e := newEnv(t)
	m := e.alice.msg(t, subjects.RoomsMine, nil)
	decode[subjects.MineResponse](t, e.alice.send(t, m)) // answered by the first instance, the only one

	second := e.secondInstance(t)
	if err := e.svc.Stop(); err != nil {
		t.Fatalf("stop first instance: %v", err)
	}
	// Only the second instance is subscribed now: a fresh request works...
	decode[subjects.MineResponse](t, e.alice.request(t, subjects.RoomsMine, nil))
	// ...and the replay is refused.
	wantError(t, e.alice.send(t, m), subjects.CodeUnauthenticated, "replay")
	if got := second.Rooms().Stats(); requestsOf(got.Endpoints, subjects.RoomsMine) != 2 {
		t.Errorf("second instance answered %d mine requests, want 2", requestsOf(got.Endpoints, subjects.RoomsMine))
	}
}

func TestSoftMode(t *testing.T) {
	e := newEnv(t, withConfig(func(c *svc.Config) { c.AuthMode = svc.AuthSoft }))
	stranger := e.stranger(t)

	for _, tc := range []struct {
		name  string
		from  *user
		opts  []reqOption
		check string // logged
	}{
		{name: "unsigned", from: e.alice, opts: []reqOption{unsigned(nats.Header{subjects.HeaderPub: {e.alice.pub}})}, check: "check=signature"},
		{name: "bad signature", from: e.alice, opts: []reqOption{signedBy(e.bob.kp), tampered(func(m *nats.Msg) { m.Header.Set(subjects.HeaderPub, e.alice.pub) })}, check: "check=signature"},
		{name: "clock skew", from: e.alice, opts: []reqOption{signedAt(time.Now().Add(-time.Hour))}, check: "clock"},
		{name: "unregistered", from: stranger, check: "check=registration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.logs.String())
			decode[subjects.MineResponse](t, tc.from.request(t, subjects.RoomsMine, nil, tc.opts...))
			logged := e.logs.String()[before:]
			if !strings.Contains(logged, "allowed by soft auth mode") || !strings.Contains(logged, tc.check) || !strings.Contains(logged, tc.from.pub) {
				t.Errorf("log %q does not report the %s check for %s", logged, tc.check, tc.from.pub)
			}
		})
	}
	t.Run("replay", func(t *testing.T) {
		m := e.alice.msg(t, subjects.RoomsMine, nil)
		decode[subjects.MineResponse](t, e.alice.send(t, m))
		before := len(e.logs.String())
		decode[subjects.MineResponse](t, e.alice.send(t, m))
		if logged := e.logs.String()[before:]; !strings.Contains(logged, "check=nonce") {
			t.Errorf("log %q does not report the replay", logged)
		}
	})
	t.Run("the caller is who it claims", func(t *testing.T) {
		// Soft mode relaxes authentication, not authorization: a claimed
		// non-admin is still not an admin.
		r := e.alice.request(t, subjects.UsersAdd, subjects.AddUserRequest{Pub: e.stranger(t).pub}, unsigned(nats.Header{subjects.HeaderPub: {e.alice.pub}}))
		wantError(t, r, subjects.CodeUnauthenticated, "only administrators", "soft auth mode")
	})
	t.Run("administrator endpoints are not relaxed", func(t *testing.T) {
		// Alice claims to be the administrator: in soft mode that would
		// make her one. Every administrator endpoint refuses a caller
		// whose checks did not all pass, and nothing is stored.
		before := e.snapshot(t)
		newcomer := e.newIdentity(t, "newcomer")
		as := []reqOption{signedBy(e.alice.kp), tampered(func(m *nats.Msg) { m.Header.Set(subjects.HeaderPub, e.admin.pub) })}
		for _, tc := range []struct {
			subject string
			body    any
		}{
			{subjects.UsersAdd, subjects.AddUserRequest{Pub: newcomer.pub, Admin: true}},
			{subjects.UsersRevoke, subjects.RevokeUserRequest{Pub: e.bob.pub}},
			{subjects.UsersList, subjects.ListUsersRequest{}},
		} {
			// The claim is the admin's, so the reply goes to the admin's
			// inbox: sent over the admin's connection, as a stolen
			// connection or a relay would.
			m := e.alice.msg(t, tc.subject, tc.body, as...)
			wantError(t, e.admin.send(t, m), subjects.CodeUnauthenticated, "soft auth mode")
		}
		e.unchanged(t, before)
		// The administrator's own signed requests still work.
		call[subjects.ListUsersResponse](t, e.admin, subjects.UsersList, subjects.ListUsersRequest{})
	})
	t.Run("no caller", func(t *testing.T) {
		wantError(t, e.alice.request(t, subjects.RoomsMine, nil, unsigned(nil)), subjects.CodeUnauthenticated, subjects.HeaderPub)
	})
}

func TestOffMode(t *testing.T) {
	e := newEnv(t, withConfig(func(c *svc.Config) { c.AuthMode = svc.AuthOff }))
	room := e.createRoom(t, e.alice, subjects.ModeCleartext)

	before := e.logs.String()
	as := unsigned(nats.Header{subjects.HeaderPub: {e.alice.pub}})
	got := call[subjects.MineResponse](t, e.alice, subjects.RoomsMine, nil, as)
	if len(got.Rooms) != 1 || got.Rooms[0].RoomID != room.RoomID {
		t.Fatalf("mine = %+v, want room %s", got, room.RoomID)
	}
	// A replay, a stale timestamp and a bad signature are all fine.
	m := e.alice.msg(t, subjects.RoomsMine, nil, signedAt(time.Now().Add(-time.Hour)), signedBy(e.bob.kp),
		tampered(func(m *nats.Msg) { m.Header.Set(subjects.HeaderPub, e.alice.pub) }))
	decode[subjects.MineResponse](t, e.alice.send(t, m))
	decode[subjects.MineResponse](t, e.alice.send(t, m))
	if after := e.logs.String()[len(before):]; strings.Contains(after, "soft") || strings.Contains(after, "refused") {
		t.Errorf("off mode logged %q", after)
	}
	wantError(t, e.alice.request(t, subjects.RoomsMine, nil, unsigned(nil)), subjects.CodeUnauthenticated, subjects.HeaderPub)
}

// TestFailClosed: when the store cannot claim a nonce, requests are refused
// with 503 and a human message.
func TestFailClosed(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if err := e.js.DeleteKeyValue(ctx, kvstore.BucketNonces); err != nil {
		t.Fatalf("delete nonce bucket: %v", err)
	}
	wantError(t, e.alice.request(t, subjects.RoomsMine, nil), subjects.CodeUnavailable, "temporarily unavailable")
	if !strings.Contains(e.logs.String(), "level=ERROR") {
		t.Errorf("the backend failure was not logged as an error:\n%s", e.logs.String())
	}
}
