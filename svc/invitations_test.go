package svc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/natstest"
)

// roomSub is a connection of its own for one user, made through the auth
// callout, with what its subscription to a room receives and the
// asynchronous errors (permissions violations) the server sends it.
type roomSub struct {
	msgs chan *nats.Msg
	errs chan error
}

// subscribeAs connects u afresh (so the callout grants what it grants now)
// and subscribes to subject.
func (e *env) subscribeAs(t *testing.T, u *user, subject string) *roomSub {
	t.Helper()
	prefix, err := subjects.InboxPrefix(u.pub)
	if err != nil {
		t.Fatal(err)
	}
	s := &roomSub{msgs: make(chan *nats.Msg, 16), errs: make(chan error, 16)}
	nc := natstest.Connect(t, e.node.ClientURL(),
		nats.Name(u.name+"-sub"),
		nats.Nkey(u.pub, u.kp.Sign),
		nats.CustomInboxPrefix(prefix),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case s.errs <- err:
			default:
			}
		}),
	)
	if _, err := nc.ChanSubscribe(subject, s.msgs); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// refused waits for the server to refuse the subscription.
func (s *roomSub) refused(t *testing.T, subject string) {
	t.Helper()
	timeout := time.After(requestTimeout)
	for {
		select {
		case err := <-s.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
		case m := <-s.msgs:
			t.Fatalf("received %q on %s, want the subscription refused", m.Data, subject)
		case <-timeout:
			t.Fatalf("the subscription to %s was not refused within %s", subject, requestTimeout)
		}
	}
}

// TestInvitationGrantsNothing: until the invitee accepts, an invitation
// gives it no room read, no key, no blob, no member list, no leave and no
// subscription to the room's subject (the auth callout does not grant
// it); the invitee sees it only among its invitations, and the room's
// members see it as invited. Once it accepts, it has all of them. Before
// invitations were proposals, the invitation itself made it a member.
func TestInvitationGrantsNothing(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	content := randomBytes(t, 100)
	blob := subjects.BlobID(content)
	call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, 0))

	req := inviteRequest(t, e.alice, room, e.bob)
	before := time.Now().Add(-time.Second)
	invited := call[subjects.MemberInfo](t, e.alice, subjects.RoomsInvite, req)
	if want := (subjects.MemberInfo{Pub: e.bob.pub, Role: subjects.RoleInvited, JoinedEpoch: room.Epoch}); !reflect.DeepEqual(invited, want) {
		t.Fatalf("invited %+v, want %+v", invited, want)
	}

	notMember := "you are not a member of room " + room.RoomID
	for _, tc := range []struct {
		subject string
		body    any
	}{
		{subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}},
		{subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID}},
		{subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID, Epoch: room.Epoch}},
		{subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID}},
		{subjects.RoomsLeave, subjects.RoomRequest{RoomID: room.RoomID}},
		{subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: blob}},
		{subjects.BlobsPut, putChunk(subjects.BlobID([]byte("x")), []byte("x"), room, 0)},
	} {
		t.Run("before accepting: "+tc.subject, func(t *testing.T) {
			wantError(t, e.bob.request(t, tc.subject, tc.body), subjects.CodeForbidden, notMember)
		})
	}
	// Nor does it receive or send the room's frames; nobody may
	// subscribe to the room log's subjects at all.
	bobs := e.deliveries(t, e.bob, room)
	wantError(t, e.sendFrame(t, e.bob, room, "too early"), subjects.CodeForbidden, "is not a member of room "+room.RoomID)
	decode[subjects.SendAck](t, e.sendFrame(t, e.alice, room, "not for bob"))
	e.subscribeAs(t, e.bob, room.Subject).refused(t, room.Subject)

	mine := call[subjects.MineResponse](t, e.bob, subjects.RoomsMine, nil)
	if len(mine.Rooms) != 0 || len(mine.Invitations) != 1 {
		t.Fatalf("bob's rooms and invitations: %+v, want no room and one invitation", mine)
	}
	inv := mine.Invitations[0]
	if inv.RoomID != room.RoomID || inv.Name != room.Name || inv.Mode != room.Mode || inv.Owner != e.alice.pub || !bytes.Equal(inv.Salt, room.Salt) ||
		inv.Epoch != room.Epoch || inv.InvitedAt.Before(before) || inv.InvitedAt.After(time.Now()) || !inv.ExpiresAt.Equal(inv.InvitedAt.Add(kvstore.InvitationTTL)) {
		t.Errorf("invitation %+v, of room %+v", inv, room)
	}
	if err := subjects.CheckRoomOwner(inv.RoomID, inv.Owner, inv.Mode, inv.Salt); err != nil {
		t.Errorf("the invitation does not prove its owner: %v", err)
	}

	// The owner sees bob as invited, with what a rekey seals to; the
	// one-user query, which receivers ask about senders, says "not a
	// member".
	members := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID})
	if len(members.Members) != 2 || members.Members[0].Pub != e.alice.pub {
		t.Fatalf("members %+v, want alice and the invited bob", members.Members)
	}
	want := withBinding(subjects.MemberInfo{Pub: e.bob.pub, Role: subjects.RoleInvited, JoinedEpoch: room.Epoch, Grant: req.Grant}, e.bob)
	if got := members.Members[1]; !reflect.DeepEqual(got, want) {
		t.Errorf("the invitee in the member list: %+v, want %+v", got, want)
	}
	if got := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID, Pub: e.bob.pub}); len(got.Members) != 0 {
		t.Errorf("members with the invitee's pub = %+v, want none: an invitee is not a member", got.Members)
	}

	// Accepted: bob is a member with everything that goes with it.
	accepted := e.accept(t, e.bob, room)
	if accepted.RoomID != room.RoomID || accepted.Owner != e.alice.pub || accepted.Epoch != room.Epoch {
		t.Fatalf("accepted %+v, want room %+v", accepted, room)
	}
	mine = call[subjects.MineResponse](t, e.bob, subjects.RoomsMine, nil)
	if len(mine.Rooms) != 1 || mine.Rooms[0].RoomID != room.RoomID || mine.Rooms[0].Role != subjects.RoleMember || len(mine.Invitations) != 0 {
		t.Errorf("bob's rooms and invitations after accepting: %+v", mine)
	}
	k := call[subjects.KeyResponse](t, e.bob, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID})
	if !bytes.Equal(k.SealedKey, req.SealedKey) || !bytes.Equal(k.Grant, req.Grant) {
		t.Errorf("bob's key after accepting is not the one the invitation sealed")
	}
	if c := call[subjects.BlobChunk](t, e.bob, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: blob}); !bytes.Equal(c.Data, content) {
		t.Errorf("bob read %d bytes of the blob, want its %d", len(c.Data), len(content))
	}
	one := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID, Pub: e.bob.pub})
	if len(one.Members) != 1 || one.Members[0].Role != subjects.RoleMember || one.Members[0].JoinedEpoch != room.Epoch {
		t.Errorf("bob after accepting: %+v", one.Members)
	}
	// bob's first frame is admitted (the router waits for its view of the
	// membership to catch up) and delivered to bob too; then alice's.
	// The frame sent before bob accepted is not among his deliveries.
	decode[subjects.SendAck](t, e.sendFrame(t, e.bob, room, "now a member"))
	decode[subjects.SendAck](t, e.sendFrame(t, e.alice, room, "for bob"))
	for _, want := range []*user{e.bob, e.alice} {
		m := nextDelivery(t, bobs)
		f, err := e2e.Decode(m.Data)
		if err != nil || f.Sender != want.pub {
			t.Fatalf("bob's delivery from %s (%v), want %s's frame", f.Sender, err, want.name)
		}
	}
}

// TestForcedInvitationsFillNoQuota replays the quota attack: users invite a
// victim into more rooms than its quota. Before invitations were proposals
// each one made the victim a member, so it could neither create nor join a
// room; now the invitations wait, and the victim creates and joins rooms
// as it likes.
func TestForcedInvitationsFillNoQuota(t *testing.T) {
	e := hostileEnv(t, withConfig(func(c *svc.Config) { c.MaxRoomsPerUser = 2 }))
	victim := e.bob
	var forced []subjects.RoomInfo
	for _, attacker := range []*user{e.alice, e.carol} {
		for range 2 {
			r := e.createRoom(t, attacker, subjects.ModeE2E)
			e.propose(t, attacker, r, victim)
			forced = append(forced, r)
		}
	}
	if got := call[subjects.MineResponse](t, victim, subjects.RoomsMine, nil); len(got.Rooms) != 0 || len(got.Invitations) != len(forced) {
		t.Fatalf("the victim's rooms and invitations: %d and %d, want none and %d", len(got.Rooms), len(got.Invitations), len(forced))
	}
	own := e.createRoom(t, victim, subjects.ModeE2E)
	friend := e.register(t, "friend")
	wanted := e.createRoom(t, friend, subjects.ModeCleartext)
	e.invite(t, friend, wanted, victim)
	mine := call[subjects.MineResponse](t, victim, subjects.RoomsMine, nil)
	got := map[string]bool{}
	for _, r := range mine.Rooms {
		got[r.RoomID] = true
	}
	if len(mine.Rooms) != 2 || !got[own.RoomID] || !got[wanted.RoomID] || len(mine.Invitations) != len(forced) {
		t.Errorf("the victim's rooms %v and %d invitations, want its own %s and %s, and %d invitations", got, len(mine.Invitations), own.RoomID, wanted.RoomID, len(forced))
	}
	// At its quota now, by its own choice: accepting another is refused.
	wantError(t, victim.request(t, subjects.RoomsAccept, subjects.RoomRequest{RoomID: forced[0].RoomID}), subjects.CodeConflict, "you are a member of 2 rooms")
}

// TestAcceptAndDecline: the invitee's answers, their errors, and what the
// owner's removal of an invitee does.
func TestAcceptAndDecline(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)
	noInvitation := "you have no pending invitation to room " + room.RoomID

	before := e.snapshot(t)
	for _, tc := range []struct {
		name    string
		from    *user
		subject string
		roomID  string
		code    int
		want    string
	}{
		{"accept without an invitation", e.carol, subjects.RoomsAccept, room.RoomID, subjects.CodeNotFound, noInvitation},
		{"decline without an invitation", e.carol, subjects.RoomsDecline, room.RoomID, subjects.CodeNotFound, noInvitation},
		{"decline as a member", e.bob, subjects.RoomsDecline, room.RoomID, subjects.CodeNotFound, noInvitation},
		{"accept a room nobody made", e.carol, subjects.RoomsAccept, newRoomID(e.alice), subjects.CodeNotFound, "not found"},
		{"decline a room nobody made", e.carol, subjects.RoomsDecline, newRoomID(e.alice), subjects.CodeNotFound, "not found"},
		{"accept a bad room ID", e.carol, subjects.RoomsAccept, "a.*", subjects.CodeBadRequest, "room_id"},
		{"decline without a room ID", e.carol, subjects.RoomsDecline, "", subjects.CodeBadRequest, "room_id is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.from.request(t, tc.subject, subjects.RoomRequest{RoomID: tc.roomID}), tc.code, tc.want)
		})
	}
	wantError(t, e.alice.request(t, subjects.RoomsInvite, inviteRequest(t, e.alice, room, e.bob)), subjects.CodeConflict, "is already a member")
	e.unchanged(t, before)

	t.Run("decline", func(t *testing.T) {
		invited := e.propose(t, e.alice, room, e.carol)
		declined := call[subjects.Invitation](t, e.carol, subjects.RoomsDecline, subjects.RoomRequest{RoomID: room.RoomID})
		if declined.RoomID != room.RoomID || declined.Owner != e.alice.pub || declined.Epoch != invited.JoinedEpoch {
			t.Errorf("declined %+v", declined)
		}
		before := e.snapshot(t)
		wantError(t, e.carol.request(t, subjects.RoomsDecline, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeNotFound, noInvitation)
		wantError(t, e.carol.request(t, subjects.RoomsAccept, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeNotFound, noInvitation)
		e.unchanged(t, before)
		if got := call[subjects.MineResponse](t, e.carol, subjects.RoomsMine, nil); len(got.Rooms)+len(got.Invitations) != 0 {
			t.Errorf("carol's rooms and invitations after declining: %+v", got)
		}
		if got := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID}); len(got.Members) != 2 {
			t.Errorf("members after carol declined: %+v", got.Members)
		}
		// A declined invitation may be made again, and accepted.
		e.invite(t, e.alice, room, e.carol)
		if got := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID, Pub: e.carol.pub}); len(got.Members) != 1 {
			t.Errorf("carol after accepting the second invitation: %+v", got.Members)
		}
	})

	t.Run("accept twice", func(t *testing.T) {
		// A second accept (a retry whose reply was lost) answers the room
		// again and changes nothing. It is sent outside the helpers, which
		// would wait for the kick of a new membership.
		call[subjects.MineResponse](t, e.carol, subjects.RoomsMine, nil) // the first accept's kick has landed
		before := e.snapshot(t)
		r, err := e.carol.nc.RequestMsg(e.carol.msg(t, subjects.RoomsAccept, subjects.RoomRequest{RoomID: room.RoomID}), requestTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if got := decode[subjects.RoomInfo](t, r); got.RoomID != room.RoomID {
			t.Errorf("accepted again: %+v", got)
		}
		e.unchanged(t, before)
	})

	t.Run("cancelled by the owner", func(t *testing.T) {
		dave := e.register(t, "dave")
		e.propose(t, e.alice, room, dave)
		current := call[subjects.RoomInfo](t, e.alice, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID})
		remove := func(keys ...*user) subjects.RemoveRequest {
			b := &subjects.RekeyBundle{FromEpoch: current.Epoch, ToEpoch: current.NextEpoch, Keys: map[string][]byte{}, Grants: map[string][]byte{}}
			for _, u := range keys {
				b.Keys[u.pub], b.Grants[u.pub] = sealedKey(t), grant(t)
			}
			return *ownerSigned(t, e.alice, &subjects.RemoveRequest{RoomID: room.RoomID, Pub: dave.pub, Rekey: b})
		}
		before := e.snapshot(t)
		wantError(t, e.alice.request(t, subjects.RoomsRemove, remove(e.alice, e.bob)), subjects.CodeConflict, "1 missing")
		e.unchanged(t, before)
		got := call[subjects.RoomInfo](t, e.alice, subjects.RoomsRemove, remove(e.alice, e.bob, e.carol))
		if got.Epoch != current.NextEpoch {
			t.Fatalf("cancelled with a rekey: %+v", got)
		}
		wantError(t, dave.request(t, subjects.RoomsAccept, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeNotFound, noInvitation)
		if mine := call[subjects.MineResponse](t, dave, subjects.RoomsMine, nil); len(mine.Rooms)+len(mine.Invitations) != 0 {
			t.Errorf("dave's rooms and invitations after the owner cancelled: %+v", mine)
		}
		for _, m := range call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID}).Members {
			if m.Pub == dave.pub {
				t.Errorf("dave still listed: %+v", m)
			}
		}
		// Removing him again: neither a member nor invited.
		again := remove(e.alice, e.bob, e.carol)
		again.Rekey.FromEpoch, again.Rekey.ToEpoch = got.Epoch, got.NextEpoch
		wantError(t, e.alice.request(t, subjects.RoomsRemove, *ownerSigned(t, e.alice, &again)), subjects.CodeNotFound, "neither a member")
	})

	t.Run("cleartext", func(t *testing.T) {
		clear := e.createRoom(t, e.alice, subjects.ModeCleartext)
		erin := e.register(t, "erin")
		e.propose(t, e.alice, clear, erin)
		wantError(t, erin.request(t, subjects.RoomsGet, subjects.RoomRequest{RoomID: clear.RoomID}), subjects.CodeForbidden, "not a member")
		cancel := ownerSigned(t, e.alice, &subjects.RemoveRequest{RoomID: clear.RoomID, Pub: erin.pub})
		call[subjects.RoomInfo](t, e.alice, subjects.RoomsRemove, cancel)
		wantError(t, erin.request(t, subjects.RoomsAccept, subjects.RoomRequest{RoomID: clear.RoomID}), subjects.CodeNotFound, "no pending invitation")
		e.invite(t, e.alice, clear, erin)
		if got := call[subjects.RoomInfo](t, erin, subjects.RoomsGet, subjects.RoomRequest{RoomID: clear.RoomID}); got.Epoch != 0 {
			t.Errorf("cleartext room after accepting: %+v", got)
		}
	})
}

// TestRekeyCoversInvitees: a rekey must seal to the pending invitees too,
// so that an invitee invited at epoch 1 that accepts after the rekey to
// epoch 2 holds the keys of both epochs.
func TestRekeyCoversInvitees(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)
	invite := inviteRequest(t, e.alice, room, e.carol)
	call[subjects.MemberInfo](t, e.alice, subjects.RoomsInvite, invite)

	before := e.snapshot(t)
	wantError(t, e.alice.request(t, subjects.RoomsRekey, rekeyRequest(t, e.alice, room, e.alice, e.bob)), subjects.CodeConflict, "1 missing", "pending invitees")
	e.unchanged(t, before)
	req := rekeyRequest(t, e.alice, room, e.alice, e.bob, e.carol)
	rekeyed := call[subjects.RoomInfo](t, e.alice, subjects.RoomsRekey, req)

	// The owner's next rekey needs the invitee's grant of the new epoch.
	got := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID})
	if n := len(got.Members); n != 3 || got.Members[2].Pub != e.carol.pub || got.Members[2].Role != subjects.RoleInvited || !bytes.Equal(got.Members[2].Grant, req.Grants[e.carol.pub]) {
		t.Fatalf("members after the rekey: %+v, want carol invited with the grant of epoch %d", got.Members, rekeyed.Epoch)
	}

	accepted := e.accept(t, e.carol, room)
	if accepted.Epoch != rekeyed.Epoch {
		t.Errorf("accepted at epoch %d, want %d", accepted.Epoch, rekeyed.Epoch)
	}
	latest := call[subjects.KeyResponse](t, e.carol, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID})
	first := call[subjects.KeyResponse](t, e.carol, subjects.RoomsKey, subjects.KeyRequest{RoomID: room.RoomID, Epoch: room.Epoch})
	if latest.Epoch != rekeyed.Epoch || !bytes.Equal(latest.SealedKey, req.Keys[e.carol.pub]) || !bytes.Equal(first.SealedKey, invite.SealedKey) {
		t.Errorf("carol's keys: epoch %d and %d, want the rekey's of epoch %d and the invitation's of epoch %d", latest.Epoch, first.Epoch, rekeyed.Epoch, room.Epoch)
	}
	one := call[subjects.MembersResponse](t, e.bob, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID, Pub: e.carol.pub})
	if len(one.Members) != 1 || one.Members[0].JoinedEpoch != room.Epoch || one.Members[0].Role != subjects.RoleMember {
		t.Errorf("carol as a member: %+v, want joined at epoch %d", one.Members, room.Epoch)
	}
}

// putInvitation writes an invitation record behind the services' back: one
// the bucket still holds though it expired, or one a lost race left.
func (e *env) putInvitation(t *testing.T, inv kvstore.Invitation) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, kvstore.BucketInvitations)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, inv.Pub+"."+inv.RoomID, b); err != nil {
		t.Fatal(err)
	}
}

// TestExpiredInvitation: an invitation older than kvstore.InvitationTTL
// that the bucket still holds is absent: not listed, not accepted, not
// counted as pending, and the owner may invite again.
func TestExpiredInvitation(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.putInvitation(t, kvstore.Invitation{
		RoomID: room.RoomID, Pub: e.bob.pub, InvitedBy: e.alice.pub, Epoch: room.Epoch,
		InvitedAt: time.Now().Add(-kvstore.InvitationTTL - time.Minute).UTC(),
		Name:      room.Name, Mode: room.Mode, Owner: room.Owner, Salt: room.Salt,
	})
	if got := call[subjects.MineResponse](t, e.bob, subjects.RoomsMine, nil); len(got.Invitations) != 0 {
		t.Errorf("expired invitation listed: %+v", got.Invitations)
	}
	if got := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID}); len(got.Members) != 1 {
		t.Errorf("expired invitee listed among the members: %+v", got.Members)
	}
	wantError(t, e.bob.request(t, subjects.RoomsAccept, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeNotFound, "has expired")
	wantError(t, e.bob.request(t, subjects.RoomsDecline, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeNotFound, "no pending invitation")
	// A rekey need not seal to it.
	rekeyed := e.rekey(t, e.alice, room, e.alice)
	// Invited again, at the new epoch, it is a proposal like any other.
	if got := e.propose(t, e.alice, rekeyed, e.bob); got.JoinedEpoch != rekeyed.Epoch {
		t.Errorf("invited again: %+v", got)
	}
	e.accept(t, e.bob, rekeyed)
}

// TestOutdatedInvitation: an invitation whose invitee holds no key of the
// room's current epoch (a rekey won a race against it) cannot be
// accepted: 409, and it is removed, rather than a member without a key.
func TestOutdatedInvitation(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	rekeyed := e.rekey(t, e.alice, room, e.alice)
	e.putInvitation(t, kvstore.Invitation{
		RoomID: room.RoomID, Pub: e.bob.pub, InvitedBy: e.alice.pub, Epoch: room.Epoch, InvitedAt: time.Now().UTC(),
		Name: room.Name, Mode: room.Mode, Owner: room.Owner, Salt: room.Salt,
	})
	wantError(t, e.bob.request(t, subjects.RoomsAccept, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeConflict, "outdated", "invite you again")
	if got := call[subjects.MineResponse](t, e.bob, subjects.RoomsMine, nil); len(got.Rooms)+len(got.Invitations) != 0 {
		t.Errorf("bob's rooms and invitations after the outdated acceptance: %+v", got)
	}
	wantError(t, e.bob.request(t, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeForbidden, "not a member")
	e.invite(t, e.alice, rekeyed, e.bob)
}
