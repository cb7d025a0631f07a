package svc_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

// The confused deputy: a reply subject is chosen by whoever sends the
// request, and the services publish replies with rights the caller lacks.
// Before the fix, a registered user made the services write records by
// naming a bucket as the reply subject:
//
//	nats --nkey carol.nk pub unibus.v1.users.get '' --reply '$KV.UNIBUS_users.U…'
//
// admitted a stranger, and the same with a signed request made a user an
// administrator or a member of any room. These tests send every endpoint's
// requests, with every outcome, to every subject a reply must never reach,
// and check that nothing is published there and nothing is stored.

// streamState is the last sequence of every stream of the account (every
// KV bucket, the nonces and the object store included): any write, and
// any deleted or purged stream, changes it.
type streamState map[string]uint64

func (e *env) streams(t testing.TB) streamState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	out := streamState{}
	names := e.js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := e.js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		out[name] = s.CachedInfo().State.LastSeq
	}
	if err := names.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	return out
}

// misdirected is the total of the services' misdirected counters.
func (e *env) misdirected(t testing.TB, services ...*svc.Services) int64 {
	t.Helper()
	if len(services) == 0 {
		services = []*svc.Services{e.svc}
	}
	var n int64
	for _, ss := range services {
		for _, ms := range []micro.Service{ss.Users(), ss.Rooms(), ss.Blobs()} {
			for _, ep := range ms.Stats().Endpoints {
				n += dataOf(t, ms.Stats().Endpoints, ep.Name).Misdirected
			}
		}
	}
	return n
}

// waitMisdirected waits until the services have dropped want requests
// since base: the event that says they were seen and refused.
func (e *env) waitMisdirected(t testing.TB, base, want int64) {
	t.Helper()
	deadline := time.Now().Add(requestTimeout)
	for e.misdirected(t)-base < want {
		if time.Now().After(deadline) {
			t.Fatalf("the services dropped %d of %d misdirected requests", e.misdirected(t)-base, want)
		}
		time.Sleep(10 * time.Millisecond) // polling the stats, not waiting for a side effect
	}
	if got := e.misdirected(t) - base; got != want {
		t.Fatalf("the services dropped %d requests as misdirected, want %d", got, want)
	}
}

// deputyCase is one request and the outcome it has when its reply subject
// is the caller's own inbox.
type deputyCase struct {
	name string
	from *user // who sends it; nil: whoever checkDeputy is given
	msg  func(t testing.TB) *nats.Msg
	want int // 0: success
}

// hostileReplies are the subjects a reply must never reach: a key in
// every bucket (whose stream would store the reply), the JetStream API
// (which would act on it), the object store, a room and another user's
// inbox.
func (e *env) hostileReplies(room subjects.RoomInfo, victim *user) []string {
	var out []string
	keys := map[string]string{
		kvstore.BucketUsers:         e.carol.pub,
		kvstore.BucketRooms:         room.RoomID,
		kvstore.BucketMembers:       room.RoomID + "." + e.carol.pub,
		kvstore.BucketRoomsByMember: e.carol.pub + "." + room.RoomID,
		kvstore.BucketRoomKeys:      room.RoomID + ".1." + e.carol.pub,
		kvstore.BucketNonces:        "00ff",
	}
	for _, b := range kvstore.Buckets() {
		if k, ok := keys[b]; ok {
			out = append(out, "$KV."+b+"."+k)
		}
	}
	return append(out,
		"$O."+kvstore.BucketBlobs+".M.eA",
		"$O."+kvstore.BucketBlobs+".C.x",
		"$JS.API.STREAM.DELETE.KV_"+kvstore.BucketUsers,
		"$JS.API.STREAM.PURGE.KV_"+kvstore.BucketMembers,
		"$JS.API.STREAM.CREATE.evil",
		room.Subject,
		"_INBOX."+victim.pub+".stolen",
		"_INBOX."+victim.pub,
		"_INBOX.nokey.x",
		"",
	)
}

// watchVictim subscribes the victim to its inbox and the room, and
// returns a counter of what arrives there.
func watchVictim(t testing.TB, victim *user, room subjects.RoomInfo) *atomic.Int64 {
	t.Helper()
	var got atomic.Int64
	for _, s := range []string{"_INBOX." + victim.pub + ".>", room.Subject} {
		sub, err := victim.nc.Subscribe(s, func(m *nats.Msg) {
			got.Add(1)
			t.Errorf("a reply reached %s: %s", m.Subject, m.Data)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := victim.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &got
}

// checkDeputy sends each case to every hostile reply subject, waits until
// the services have dropped them all, checks that nothing was stored or
// delivered, and then sends each case once to the caller's own inbox to
// show that the outcome the hostile copies would have had is the one the
// case names (so the test cannot pass by the requests going nowhere).
func (e *env) checkDeputy(t *testing.T, sender *user, room subjects.RoomInfo, victim *user, cases []deputyCase) {
	t.Helper()
	if len(cases) == 0 {
		t.Fatal("no cases to send")
	}
	delivered := watchVictim(t, victim, room)
	// Any kick due on the sender's connection lands first: what a
	// connection publishes while it reconnects may be lost.
	e.peer(t, sender.nc).settle(t)
	before, base := e.streams(t), e.misdirected(t)
	replies := e.hostileReplies(room, victim)
	var sent int64
	for _, c := range cases {
		for _, reply := range replies {
			m := c.msg(t)
			m.Reply = reply
			if err := sender.nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
			sent++
			if len(m.Data) > 1<<20 {
				// A large body waits until the services have dropped
				// everything before it, so that a loaded machine never
				// overflows their subscription's pending limits (which
				// would lose requests, not misdirect them).
				e.waitMisdirected(t, base, sent)
			}
		}
	}
	e.waitMisdirected(t, base, sent)
	if err := victim.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if after := e.streams(t); !equalStreams(before, after) {
		t.Errorf("streams changed: %v → %v", before, after)
	}
	if n := delivered.Load(); n != 0 {
		t.Errorf("%d replies reached the victim's inbox or the room", n)
	}
	for _, c := range cases {
		r := sender.send(t, c.msg(t))
		code := r.Header.Get(micro.ErrorCodeHeader)
		switch {
		case c.want == 0 && code != "":
			t.Errorf("%s: control got error %s %q, want success", c.name, code, r.Header.Get(micro.ErrorHeader))
		case c.want != 0 && code != itoa(c.want):
			t.Errorf("%s: control got %q (%s), want %d", c.name, code, r.Header.Get(micro.ErrorHeader), c.want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func equalStreams(a, b streamState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestRepliesOnlyToTheCallersInbox: every endpoint, every outcome.
func TestRepliesOnlyToTheCallersInbox(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)
	bobsRoom := e.createRoom(t, e.bob, subjects.ModeCleartext)
	// A case of u's request to subject, with its outcome when u's reply
	// subject is u's own inbox.
	req := func(name string, u *user, want int, subject string, body any, opts ...reqOption) deputyCase {
		return deputyCase{name: name, from: u, want: want, msg: func(t testing.TB) *nats.Msg { return u.msg(t, subject, body, opts...) }}
	}
	var cases []deputyCase
	// Outcomes every endpoint has: 400, 401 (unsigned, bad signature,
	// unregistered signer) and 413. The stranger's request travels as a
	// relay of its signed bytes would send it: its reply may go only to
	// its own inbox.
	stranger := e.stranger(t)
	huge := bytes.Repeat([]byte(" "), svc.DefaultMaxBundleBytes+1)
	for _, ms := range []micro.Service{e.svc.Users(), e.svc.Rooms(), e.svc.Blobs()} {
		for _, ep := range ms.Info().Endpoints {
			s := ep.Subject
			cases = append(cases,
				req(s+" 400", e.alice, subjects.CodeBadRequest, s, []byte(`{"unknown":`)),
				req(s+" 401 unsigned", e.alice, subjects.CodeUnauthenticated, s, nil, unsigned(nats.Header{subjects.HeaderPub: {e.alice.pub}})),
				req(s+" 401 bad signature", e.alice, subjects.CodeUnauthenticated, s, nil, signedBy(e.bob.kp), tampered(func(m *nats.Msg) { m.Header.Set(subjects.HeaderPub, e.alice.pub) })),
				req(s+" 413", e.alice, subjects.CodeTooLarge, s, huge),
				req(s+" 401 unregistered", stranger, subjects.CodeUnauthenticated, s, nil),
			)
		}
	}
	// Outcomes that depend on the request, and requests that would change
	// state when answered (the admin adds a user, alice creates a room):
	// sent misdirected, they must not run.
	newcomer := e.newIdentity(t, "newcomer")
	cases = append(cases,
		req("users.get 200", e.alice, 0, subjects.UsersGet, subjects.GetUserRequest{Pub: e.admin.pub}),
		req("rooms.mine 200", e.alice, 0, subjects.RoomsMine, nil),
		req("rooms.get 200", e.alice, 0, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}),
		req("rooms.members 200", e.alice, 0, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID}),
		req("users.add 403", e.alice, subjects.CodeForbidden, subjects.UsersAdd, subjects.AddUserRequest{Pub: newcomer.pub, Admin: true}),
		req("users.list 403", e.alice, subjects.CodeForbidden, subjects.UsersList, nil),
		req("rooms.invite 403", e.alice, subjects.CodeForbidden, subjects.RoomsInvite, subjects.InviteRequest{RoomID: bobsRoom.RoomID, Pub: e.carol.pub}),
		req("rooms.get 404", e.alice, subjects.CodeNotFound, subjects.RoomsGet, subjects.RoomRequest{RoomID: newRoomID(e.alice)}),
		req("rooms.create 409", e.alice, subjects.CodeConflict, subjects.RoomsCreate, subjects.CreateRoomRequest{RoomID: room.RoomID, Salt: room.Salt, Mode: subjects.ModeE2E, SealedKey: sealedKey(t), Grant: grant(t)}),
		req("rooms.create 200", e.alice, 0, subjects.RoomsCreate, subjects.CreateRoomRequest{Name: "new", Mode: subjects.ModeCleartext}),
		// The controls run in order: the 404 before the add.
		req("users.get 404", e.admin, subjects.CodeNotFound, subjects.UsersGet, subjects.GetUserRequest{Pub: newcomer.pub}),
		req("users.add 200", e.admin, 0, subjects.UsersAdd, subjects.AddUserRequest{Pub: newcomer.pub, Admin: true}),
	)
	for _, sender := range []*user{e.alice, e.admin, stranger} {
		t.Run(sender.name, func(t *testing.T) {
			var mine []deputyCase
			for _, c := range cases {
				if c.from == sender {
					mine = append(mine, c)
				}
			}
			e.checkDeputy(t, sender, room, e.bob, mine)
		})
	}
}

// TestRepliesOnlyToTheCallersInboxWhenLimited: the 429 and 503 outcomes.
func TestRepliesOnlyToTheCallersInboxWhenLimited(t *testing.T) {
	t.Run("429", func(t *testing.T) {
		e := newEnv(t, withConfig(func(c *svc.Config) { c.RateLimit, c.RateBurst = 0.01, 12 }))
		room := e.createRoom(t, e.carol, subjects.ModeCleartext)
		// Alice spends her burst; from then on she is refused with 429.
		for {
			r := e.alice.request(t, subjects.RoomsMine, nil)
			if r.Header.Get(micro.ErrorCodeHeader) == itoa(subjects.CodeTooManyRequests) {
				break
			}
		}
		e.checkDeputy(t, e.alice, room, e.bob, []deputyCase{
			{"rooms.mine 429", nil, func(t testing.TB) *nats.Msg { return e.alice.msg(t, subjects.RoomsMine, nil) }, subjects.CodeTooManyRequests},
		})
	})
	t.Run("503", func(t *testing.T) {
		e := newEnv(t)
		room := e.createRoom(t, e.carol, subjects.ModeCleartext)
		ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
		defer cancel()
		if err := e.js.DeleteKeyValue(ctx, kvstore.BucketNonces); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Fatal(err)
		}
		e.checkDeputy(t, e.alice, room, e.bob, []deputyCase{
			{"rooms.mine 503", nil, func(t testing.TB) *nats.Msg { return e.alice.msg(t, subjects.RoomsMine, nil) }, subjects.CodeUnavailable},
		})
	})
}

// TestRawReplyIntoBuckets replays the reported attacks as the nats CLI
// sends them (a raw publish with a reply subject): the stranger is not
// admitted, carol does not become an administrator, and carol does not
// become a member of alice's room.
func TestRawReplyIntoBuckets(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	stranger := e.newIdentity(t, "stranger")
	base := e.misdirected(t)
	raw := func(subject, reply string, body []byte, hdr nats.Header) {
		t.Helper()
		if err := e.carol.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: body, Header: hdr}); err != nil {
			t.Fatal(err)
		}
	}
	// nats --nkey carol.nk pub unibus.v1.users.get '' --reply '$KV.UNIBUS_users.<stranger>'
	raw(subjects.UsersGet, "$KV."+kvstore.BucketUsers+"."+stranger.pub, nil, nil)
	// A signed users.get of the administrator, reflected over carol's record.
	adm := e.carol.msg(t, subjects.UsersGet, subjects.GetUserRequest{Pub: e.admin.pub})
	raw(adm.Subject, "$KV."+kvstore.BucketUsers+"."+e.carol.pub, adm.Data, adm.Header)
	// Signed requests reflected into the membership buckets.
	for _, reply := range []string{
		"$KV." + kvstore.BucketMembers + "." + room.RoomID + "." + e.carol.pub,
		"$KV." + kvstore.BucketRoomsByMember + "." + e.carol.pub + "." + room.RoomID,
	} {
		m := e.carol.msg(t, subjects.RoomsMine, nil)
		raw(m.Subject, reply, m.Data, m.Header)
	}
	e.waitMisdirected(t, base, 4)

	if _, err := nats.Connect(e.node.ClientURL(), nats.Nkey(stranger.pub, stranger.kp.Sign), nats.MaxReconnects(0)); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("the stranger connects: %v, want an authorization violation", err)
	}
	if got := call[subjects.UserInfo](t, e.admin, subjects.UsersGet, subjects.GetUserRequest{Pub: e.carol.pub}); got.Admin {
		t.Error("carol became an administrator")
	}
	if got := call[subjects.MineResponse](t, e.carol, subjects.RoomsMine, nil); len(got.Rooms) != 0 {
		t.Errorf("carol is in rooms %+v", got.Rooms)
	}
	wantError(t, e.carol.request(t, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeForbidden)
}

// TestUnverifiedRequestsAnsweredInTheirInbox: a request that names no
// caller at all (no Unibus-Pub) is told why it is refused in the inbox it
// names, with a fixed 401 and nothing from the store; one that names a
// caller is answered only in that caller's inbox.
func TestUnverifiedRequestsAnsweredInTheirInbox(t *testing.T) {
	e := newEnv(t)
	wantError(t, e.alice.request(t, subjects.UsersList, nil, unsigned(nil)), subjects.CodeUnauthenticated, "not signed")
	base := e.misdirected(t)
	m := e.alice.msg(t, subjects.UsersList, nil, unsigned(nats.Header{subjects.HeaderPub: {e.bob.pub}}))
	m.Reply = e.alice.nc.NewRespInbox()
	sub, err := e.alice.nc.SubscribeSync(m.Reply)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.alice.nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	e.waitMisdirected(t, base, 1)
	if r, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("a request claiming bob was answered in alice's inbox: %s", r.Data)
	}
}

// TestResponderHoldsNoRightsOnState is the second layer: the services'
// responding connection may publish only into peers' inboxes, and the
// store's connection receives no requests, whatever the code does.
func TestResponderHoldsNoRightsOnState(t *testing.T) {
	e := newEnv(t)
	before := e.streams(t)
	violations := make(chan error, 16)
	responder := e.serviceConn(t)
	responder.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err })
	for _, s := range []string{
		"$KV." + kvstore.BucketUsers + "." + e.carol.pub,
		"$JS.API.STREAM.DELETE.KV_" + kvstore.BucketUsers,
		"$O." + kvstore.BucketBlobs + ".M.x",
		subjects.UsersAdd,
	} {
		if err := responder.Publish(s, []byte(`{"pub":"`+e.carol.pub+`","admin":true}`)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-violations:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Fatalf("publish %s: %v, want a permissions violation", s, err)
			}
		case <-time.After(requestTimeout):
			t.Fatalf("the responder published to %s without a permissions violation", s)
		}
	}
	storeConn, err := e.node.StoreUserConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(storeConn.Close)
	storeConn.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err })
	if _, err := storeConn.SubscribeSync(subjects.UsersAll); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-violations:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("store subscribes requests: %v, want a permissions violation", err)
		}
	case <-time.After(requestTimeout):
		t.Fatal("the store's connection subscribed to requests without a permissions violation")
	}
	if after := e.streams(t); !equalStreams(before, after) {
		t.Errorf("streams changed: %v → %v", before, after)
	}
}

// TestDiscoveryRepliesCannotWriteState: micro's own handlers ($SRV.PING,
// INFO, STATS) reply wherever a request says, and only administrators may
// send them. Even so, the responder's permissions keep an administrator's
// reply subject out of the buckets.
func TestDiscoveryRepliesCannotWriteState(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeCleartext)
	delivered := watchVictim(t, e.bob, room)
	before := e.streams(t)
	subject := "$SRV.INFO." + subjects.UsersService
	for _, reply := range e.hostileReplies(room, e.bob) {
		if reply == "" || strings.HasPrefix(reply, "_INBOX.") {
			continue // no reply at all; inboxes are the responder's to publish to
		}
		if err := e.admin.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply}); err != nil {
			t.Fatal(err)
		}
	}
	// micro answers one subscription's requests in order: once this one,
	// sent to the admin's inbox, is answered, the one before was handled.
	if _, err := e.admin.nc.Request(subject, nil, requestTimeout); err != nil {
		t.Fatal(err)
	}
	if after := e.streams(t); !equalStreams(before, after) {
		t.Errorf("streams changed: %v → %v", before, after)
	}
	if n := delivered.Load(); n != 0 {
		t.Errorf("%d discovery replies reached the room", n)
	}
	if got := call[subjects.UserInfo](t, e.admin, subjects.UsersGet, subjects.GetUserRequest{Pub: e.carol.pub}); got.Admin {
		t.Error("carol became an administrator")
	}
}
