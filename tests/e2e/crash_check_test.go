package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

// The checks of TestCrashDurability after each restart.

// roomView is a room as read back after a restart.
type roomView struct {
	info    subjects.RoomInfo
	members map[string]subjects.MemberInfo
}

// verify checks the restarted state against the acknowledged writes and
// the invariants between the buckets. Writes in flight at the kill may be
// visible, but only in the states their write order allows.
func verify(t *testing.T, l *ledger, admin *actor, peers []*actor) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()

	// Users.
	users, err := admin.conn.ListUsers(ctx)
	if err != nil {
		t.Fatalf("list users after restart: %v", err)
	}
	listed := map[string]subjects.UserInfo{}
	for _, u := range users {
		listed[u.Pub] = u
	}
	for _, pub := range l.users {
		if u, ok := listed[pub]; !ok || u.Revoked {
			t.Errorf("acknowledged user %s lost after restart (listed: %v, revoked: %v)", pub, ok, u.Revoked)
		}
	}
	for _, a := range peers {
		if len(listed[a.pub()].EncKey) == 0 {
			t.Errorf("%s's acknowledged encryption key lost after restart", a.name)
		}
	}

	// Rooms, members, keys.
	byPub := map[string]*actor{}
	for _, a := range peers {
		byPub[a.pub()] = a
	}
	views := map[string]roomView{}
	for _, r := range l.rooms {
		views[r.id] = verifyRoom(ctx, t, l, r, byPub)
	}

	// rooms_by_member ⊆ members ⊆ rooms, seen from each user's `mine`.
	for _, a := range peers {
		refs, err := a.conn.ListMyRooms(ctx)
		if err != nil {
			t.Errorf("rooms of %s after restart: %v", a.name, err)
			continue
		}
		mine := map[string]bool{}
		for _, ref := range refs {
			mine[ref.RoomID] = true
			i := slices.IndexFunc(l.rooms, func(r *roomRec) bool { return r.id == ref.RoomID })
			if i < 0 {
				// Not acknowledged: only a create of a's in flight may
				// show, and then complete.
				p := slices.IndexFunc(l.pending, func(p pending) bool {
					return p.kind == writeCreate && p.owner == a && p.name == ref.Name && p.mode == ref.Mode
				})
				if p < 0 {
					t.Errorf("%s's rooms list %s (%q), which no one created", a.name, ref.RoomID, ref.Name)
					continue
				}
				r := &roomRec{id: ref.RoomID, name: ref.Name, mode: ref.Mode, owner: a, epoch: ref.Epoch, holders: []*actor{a}}
				v := verifyRoom(ctx, t, l, r, byPub)
				if len(v.members) != 1 || ref.Role != subjects.RoleOwner || (r.encrypted() && ref.Epoch != 1) {
					t.Errorf("room %s created in flight by %s shows as %+v with members %v", r.id, a.name, ref, v.members)
				}
				l.pending[p].room = r // found: acknowledged from now on
				continue
			}
			r, v := l.rooms[i], views[ref.RoomID]
			m, ok := v.members[a.pub()]
			switch {
			case !ok:
				t.Errorf("%s's rooms list %s, whose members do not include %s: the index is ahead of the member records", a.name, r.id, a.name)
			case m.Role != ref.Role || v.info.Epoch != ref.Epoch || v.info.Name != ref.Name || v.info.Owner != ref.Owner || v.info.Mode != ref.Mode:
				t.Errorf("%s's rooms list %+v, but the room is %+v with %s as %s", a.name, ref, v.info, a.name, m.Role)
			}
		}
		for _, r := range l.rooms {
			switch {
			case (r.owner == a || slices.Contains(r.members, a)) && !mine[r.id] && !l.pendingOn(writeRemove, r, a):
				t.Errorf("acknowledged membership of %s in room %s missing from its rooms", a.name, r.id)
			case slices.Contains(r.removed, a) && mine[r.id] && !l.pendingOn(writeInvite, r, a):
				t.Errorf("%s's acknowledged removal from room %s undone: the room is in its rooms", a.name, r.id)
			}
		}
	}
}

// verifyRoom checks one room against the acknowledged writes (l.mu is
// held) and returns what it read.
func verifyRoom(ctx context.Context, t *testing.T, l *ledger, r *roomRec, byPub map[string]*actor) roomView {
	t.Helper()
	var v roomView
	info, err := r.owner.conn.GetRoom(ctx, r.id)
	if err != nil {
		t.Errorf("acknowledged room %s (%q, by %s) lost after restart: %v", r.id, r.name, r.owner.name, err)
		return v
	}
	v.info = info
	switch {
	case info.Mode != r.mode || info.Owner != r.owner.pub() || info.Name != r.name:
		t.Errorf("room %s after restart: %+v, want %s room %q owned by %s", r.id, info, r.mode, r.name, r.owner.name)
	case r.encrypted() && info.Epoch < r.epoch:
		t.Errorf("room %s after restart at epoch %d, below the acknowledged epoch %d", r.id, info.Epoch, r.epoch)
	case !r.encrypted() && info.Epoch != 0:
		t.Errorf("cleartext room %s after restart at epoch %d", r.id, info.Epoch)
	}
	ms, err := r.owner.conn.Members(ctx, r.id)
	if err != nil {
		t.Errorf("members of room %s after restart: %v", r.id, err)
		return v
	}
	v.members = map[string]subjects.MemberInfo{}
	for _, m := range ms {
		v.members[m.Pub] = m
	}
	if m, ok := v.members[r.owner.pub()]; !ok || m.Role != subjects.RoleOwner {
		t.Errorf("room %s after restart: owner %s not listed as its owner: %+v", r.id, r.owner.name, ms)
	}
	for _, a := range r.members {
		if m, ok := v.members[a.pub()]; (!ok || m.Role != subjects.RoleMember) && !l.pendingOn(writeRemove, r, a) {
			t.Errorf("acknowledged invitation of %s to room %s lost after restart: %+v", a.name, r.id, ms)
		}
	}
	var listed []*actor
	for _, m := range ms {
		a := byPub[m.Pub]
		switch {
		case a == nil:
			t.Errorf("room %s lists %s, whom no one invited", r.id, m.Pub)
			continue
		case a != r.owner && !slices.Contains(r.members, a) && !l.pendingOn(writeInvite, r, a):
			t.Errorf("room %s lists %s, who is not a member by the acknowledged writes (removed: %v)", r.id, a.name, slices.Contains(r.removed, a))
			continue
		case r.encrypted() && m.JoinedEpoch > info.Epoch:
			t.Errorf("room %s at epoch %d lists %s as joined at epoch %d", r.id, info.Epoch, a.name, m.JoinedEpoch)
		case m.Role == subjects.RoleInvited:
			// An invitation in flight at the kill, not accepted yet: a
			// proposal, which holds no key it could fetch.
			continue
		}
		listed = append(listed, a)
	}
	// Removed members are refused.
	for _, a := range r.removed {
		if l.pendingOn(writeInvite, r, a) {
			continue
		}
		if _, err := a.conn.GetRoom(ctx, r.id); !errors.Is(err, client.ErrForbidden) {
			t.Errorf("%s, removed from room %s, reads it after restart: %v", a.name, r.id, err)
		}
		if r.encrypted() {
			if _, err := a.conn.RoomKey(ctx, r.id, 0); !errors.Is(err, client.ErrForbidden) {
				t.Errorf("%s, removed from room %s, fetches its key after restart: %v", a.name, r.id, err)
			}
		}
	}
	if !r.encrypted() {
		return v
	}
	// Every listed member holds the current key, all the same one; the
	// holders of the last acknowledged epoch still in the room hold that
	// epoch's key.
	sameKey(ctx, t, r, info.Epoch, listed)
	if r.epoch != info.Epoch {
		var holders []*actor
		for _, a := range r.holders {
			if !l.pendingOn(writeRemove, r, a) {
				holders = append(holders, a)
			}
		}
		sameKey(ctx, t, r, r.epoch, holders)
	}
	return v
}

// sameKey checks that each of holders fetches its sealed key of room r for
// epoch and opens it, and that all open the same room key.
func sameKey(ctx context.Context, t *testing.T, r *roomRec, epoch uint64, holders []*actor) {
	t.Helper()
	var first []byte
	var firstName string
	for _, a := range holders {
		resp, err := a.conn.RoomKey(ctx, r.id, epoch)
		if err != nil {
			t.Errorf("%s cannot fetch its key of room %s epoch %d after restart: %v", a.name, r.id, epoch, err)
			continue
		}
		if resp.Epoch != epoch || resp.RoomID != r.id {
			t.Errorf("%s asked for the key of room %s epoch %d, got room %s epoch %d", a.name, r.id, epoch, resp.RoomID, resp.Epoch)
			continue
		}
		key, err := e2e.OpenRoomKey(a.enc, r.id, epoch, a.pub(), resp.SealedKey)
		if err != nil {
			t.Errorf("%s cannot open its key of room %s epoch %d: %v", a.name, r.id, epoch, err)
			continue
		}
		if first == nil {
			first, firstName = key, a.name
		} else if !bytes.Equal(first, key) {
			t.Errorf("room %s epoch %d: %s and %s hold different room keys: a rekey's keys are mixed", r.id, epoch, firstName, a.name)
		}
	}
}

// retryPending retries the writes in flight at the kill, as a client whose
// request failed would, and checks that each retry completes its write. It
// returns how many rooms created in flight were found complete and how
// many writes were retried.
func retryPending(t *testing.T, l *ledger, admin *actor) (found, retried int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l.mu.Lock()
	work := slices.Clone(l.pending)
	l.mu.Unlock()
	for _, p := range work {
		switch p.kind {
		case writeUser:
			if _, err := admin.conn.AddUser(ctx, p.user, "retried", false); err != nil && !errors.Is(err, client.ErrConflict) {
				t.Errorf("retry %s: %v", p, err)
				continue
			}
			if u, err := admin.conn.GetUser(ctx, p.user); err != nil || u.Revoked {
				t.Errorf("retried %s, but the user is not there: %+v, %v", p, u, err)
				continue
			}
			l.ackUser(p.user)
			retried++
		case writeCreate:
			// The room ID was chosen by the client that got no answer: a
			// retry would make another room. verify found this one
			// complete or not at all.
			if p.room != nil {
				found++
				l.ackRoom(p.room)
			}
		case writeInvite:
			if err := join(ctx, p.room, p.member); err != nil {
				t.Errorf("retry %s: %v", p, err)
				continue
			}
			if !memberNow(ctx, t, p.room, p.member, true) {
				continue
			}
			l.ackInvite(p.room, p.member)
			retried++
		case writeRemove:
			info, err := p.room.owner.conn.Remove(ctx, p.room.id, p.member.pub())
			if errors.Is(err, client.ErrNotFound) && p.room.encrypted() {
				// Removed, but maybe not rekeyed: the owner rekeys.
				info, err = p.room.owner.conn.Rekey(ctx, p.room.id)
			} else if errors.Is(err, client.ErrNotFound) {
				err = nil
			}
			if err != nil {
				t.Errorf("retry %s: %v", p, err)
				continue
			}
			if !memberNow(ctx, t, p.room, p.member, false) {
				continue
			}
			l.ackRemove(p.room, p.member, info.Epoch)
			retried++
		case writeRekey:
			info, err := p.room.owner.conn.Rekey(ctx, p.room.id)
			if err != nil {
				t.Errorf("rekey after a crashed %s: %v", p, err)
				continue
			}
			l.ackRekey(p.room, info.Epoch)
			l.mu.Lock()
			holders := slices.Clone(p.room.holders)
			l.mu.Unlock()
			sameKey(ctx, t, p.room, info.Epoch, holders)
			retried++
		}
	}
	l.mu.Lock()
	l.pending = nil
	l.mu.Unlock()
	return found, retried
}

// memberNow checks that m is (or is not) a member of r in every record
// that grants access: the member list and m's rooms. It reports success.
func memberNow(ctx context.Context, t *testing.T, r *roomRec, m *actor, want bool) bool {
	t.Helper()
	ms, err := r.owner.conn.Members(ctx, r.id)
	if err != nil {
		t.Errorf("members of %s: %v", r.id, err)
		return false
	}
	refs, err := m.conn.ListMyRooms(ctx)
	if err != nil {
		t.Errorf("rooms of %s: %v", m.name, err)
		return false
	}
	listed := slices.ContainsFunc(ms, func(x subjects.MemberInfo) bool { return x.Pub == m.pub() })
	indexed := slices.ContainsFunc(refs, func(x client.RoomRef) bool { return x.RoomID == r.id })
	if listed != want || indexed != want {
		t.Errorf("after the retry, %s listed in room %s: %v, room in its rooms: %v; want %v", m.name, r.id, listed, indexed, want)
		return false
	}
	return true
}

// checkMessages publishes in every acknowledged encrypted room with
// members and checks that a member receives the owner's message decrypted.
// The member may still be getting its permissions refreshed after a
// retried invitation (the bus disconnects it shortly after the change), so
// the owner publishes again until one message arrives.
func checkMessages(t *testing.T, l *ledger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	checked := 0
	for _, r := range l.rooms {
		if !r.encrypted() || len(r.members) == 0 {
			continue
		}
		got := make(chan client.Message, 64)
		m := r.members[0]
		sub, err := m.conn.Subscribe(ctx, r.id, func(msg client.Message) {
			select {
			case got <- msg:
			default:
			}
		}, func(err error) { t.Errorf("%s dropped a frame in %s: %v", m.name, r.id, err) })
		if err != nil {
			t.Fatalf("%s subscribes to %s after the restarts: %v", m.name, r.id, err)
		}
		sent := map[string]string{} // message ID → text
	publish:
		for n := 1; ; n++ {
			text := fmt.Sprintf("after the crashes: %s #%d", r.name, n)
			s, err := r.owner.conn.Publish(ctx, r.id, []byte(text))
			if err != nil {
				t.Fatalf("%s publishes in %s after the restarts: %v", r.owner.name, r.id, err)
			}
			sent[s.ID] = text
			select {
			case msg := <-got:
				if text, ok := sent[msg.ID]; !ok || string(msg.Data) != text || msg.Sender != r.owner.pub() || msg.Room != r.id {
					t.Errorf("%s received %+v in %s, want one of %s's messages %v", m.name, msg, r.id, r.owner.name, sent)
				}
				break publish
			case <-time.After(250 * time.Millisecond):
			case <-ctx.Done():
				t.Fatalf("%s received none of %d messages published in %s within %s", m.name, len(sent), r.id, waitTimeout)
			}
		}
		if err := sub.Unsubscribe(); err != nil {
			t.Errorf("unsubscribe: %v", err)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no encrypted room with members to publish in")
	}
	t.Logf("after the last restart: a member received the owner's message, decrypted, in each of the %d encrypted rooms", checked)
}
