package e2e_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// Shape of TestCrashDurability.
const (
	crashCycles  = 3
	crashOwners  = 3
	crashMembers = 4
	// roomsPerCycle rooms are created by each owner in each cycle, in
	// turn encrypted and cleartext.
	roomsPerCycle = 2
	// userAddPause paces the admin's stream of new users, below the
	// services' default rate limit (50 requests a second per identity);
	// the owners write as fast as the limit lets them.
	userAddPause = 25 * time.Millisecond
	// limitedPause is the pause before retrying a request refused with 429.
	limitedPause = 20 * time.Millisecond
	// The first kill comes earlyKill plus up to killJitter into the
	// stream, while the owners create rooms; the next ones up to
	// killJitter after every owner has created its rooms, while they
	// invite, remove and rekey.
	earlyKill  = 300 * time.Millisecond
	killJitter = 500 * time.Millisecond
	// opTimeout bounds each write of the stream and the connections.
	opTimeout = 5 * time.Second
	// maxStream bounds the stream before the kill.
	maxStream = 10 * time.Second
)

// The kinds of writes.
const (
	writeUser   = "add user"
	writeCreate = "create room"
	writeInvite = "invite"
	writeRemove = "remove"
	writeRekey  = "rekey"
)

var writeKinds = []string{writeUser, writeCreate, writeInvite, writeRemove, writeRekey}

// actor is an identity the test drives through the client package.
type actor struct {
	name string
	id   *identity.Identity
	enc  *e2e.EncryptionKey
	conn *client.Conn
}

func (a *actor) pub() string { return a.id.PublicKey() }

// join makes m a member of r: r's owner invites m, and m accepts (an
// invitation is a proposal). An invitation or a membership that an earlier
// attempt left (ErrConflict) is accepted as it stands: accepting is
// idempotent.
func join(ctx context.Context, r *roomRec, m *actor) error {
	if _, err := r.owner.conn.Invite(ctx, r.id, m.pub()); err != nil && !errors.Is(err, client.ErrConflict) {
		return err
	}
	_, err := m.conn.Accept(ctx, r.id)
	return err
}

// roomRec is what the acknowledged writes say about a room.
type roomRec struct {
	id, name, mode string
	owner          *actor
	// members are the members besides the owner: acknowledged invitations
	// not followed by an acknowledged removal.
	members []*actor
	// removed are acknowledged removals not followed by an acknowledged
	// invitation.
	removed []*actor
	// epoch is the last acknowledged epoch (1 at creation of an encrypted
	// room, 0 in a cleartext one), holders the members (owner included)
	// when it was acknowledged: each must hold its key.
	epoch   uint64
	holders []*actor
}

func (r *roomRec) encrypted() bool { return r.mode == subjects.ModeE2E }

// pending is a write that got no successful reply because unibusd was
// killed: it may have landed wholly, partly or not at all.
type pending struct {
	kind   string
	user   string   // writeUser: the public key
	owner  *actor   // writeCreate: the owner, name and mode asked for
	name   string   //
	mode   string   //
	room   *roomRec // writeInvite, writeRemove, writeRekey; writeCreate once found
	member *actor   // writeInvite, writeRemove
}

func (p pending) String() string {
	switch p.kind {
	case writeUser:
		return "add user " + p.user
	case writeCreate:
		return fmt.Sprintf("create %s room %q by %s", p.mode, p.name, p.owner.name)
	case writeInvite:
		return fmt.Sprintf("invite %s to %s", p.member.name, p.room.id)
	case writeRemove:
		return fmt.Sprintf("remove %s from %s", p.member.name, p.room.id)
	default:
		return "rekey " + p.room.id
	}
}

// ledger records the acknowledged writes of every cycle and the writes in
// flight at the last kill. Writers and checks share it under mu.
type ledger struct {
	t *testing.T

	mu      sync.Mutex
	killed  bool // set just before the SIGKILL: a failed write is then pending
	users   []string
	rooms   []*roomRec
	pending []pending
	acked   map[string]int // acknowledged writes by kind, all cycles
	fresh   map[string]int // acknowledged writes by kind, this cycle's stream
	limited int            // requests of this cycle's stream refused with 429
}

func newLedger(t *testing.T) *ledger {
	return &ledger{t: t, acked: map[string]int{}, fresh: map[string]int{}}
}

// ack counts an acknowledged write; l.mu is held.
func (l *ledger) ack(kind string) {
	l.acked[kind]++
	l.fresh[kind]++
}

func (l *ledger) ackUser(pub string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.users = append(l.users, pub)
	l.ack(writeUser)
}

func (l *ledger) ackRoom(r *roomRec) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rooms = append(l.rooms, r)
	l.ack(writeCreate)
}

func (l *ledger) ackInvite(r *roomRec, m *actor) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.members = append(r.members, m)
	r.removed = slices.DeleteFunc(r.removed, func(a *actor) bool { return a == m })
	l.ack(writeInvite)
}

func (l *ledger) ackRemove(r *roomRec, m *actor, epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.members = slices.DeleteFunc(r.members, func(a *actor) bool { return a == m })
	r.removed = append(r.removed, m)
	if r.encrypted() {
		l.newEpoch(r, epoch)
	}
	l.ack(writeRemove)
}

func (l *ledger) ackRekey(r *roomRec, epoch uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.newEpoch(r, epoch)
	l.ack(writeRekey)
}

// newEpoch records an acknowledged epoch; l.mu is held.
func (l *ledger) newEpoch(r *roomRec, epoch uint64) {
	if epoch <= r.epoch {
		l.t.Errorf("room %s: acknowledged epoch %d, not above %d", r.id, epoch, r.epoch)
	}
	r.epoch = epoch
	r.holders = append([]*actor{r.owner}, r.members...)
}

// retryLimited runs write until the services stop refusing it with 429
// (rate limited: refused before anything is written, so a retry is
// safe), pausing limitedPause each time.
func (l *ledger) retryLimited(ctx context.Context, write func(context.Context) error) error {
	for {
		err := write(ctx)
		if !errors.Is(err, client.ErrTooManyRequests) {
			return err
		}
		l.mu.Lock()
		l.limited++
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return err
		case <-time.After(limitedPause):
		}
	}
}

// failed handles a write that did not succeed: after the kill it is
// pending; before, it is a test failure.
func (l *ledger) failed(p pending, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.killed {
		l.pending = append(l.pending, p)
		return
	}
	l.t.Errorf("%s failed before the crash: %v", p, err)
}

// roomsOf returns the rooms of owner, of every cycle.
func (l *ledger) roomsOf(owner *actor) []*roomRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*roomRec
	for _, r := range l.rooms {
		if r.owner == owner {
			out = append(out, r)
		}
	}
	return out
}

// isMember reports whether the acknowledged writes make m a member of r.
func (l *ledger) isMember(r *roomRec, m *actor) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(r.members, m)
}

// pendingOn reports whether a write of kind on room r for member m (nil:
// any) is pending; l.mu is held.
func (l *ledger) pendingOn(kind string, r *roomRec, m *actor) bool {
	return slices.ContainsFunc(l.pending, func(p pending) bool {
		return p.kind == kind && p.room == r && (m == nil || p.member == m)
	})
}

// summary describes counts by kind.
func summary(counts map[string]int) string {
	total := 0
	s := ""
	for _, k := range writeKinds {
		total += counts[k]
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%d %s", counts[k], k)
	}
	return fmt.Sprintf("%d (%s)", total, s)
}

// TestCrashDurability kills unibusd with SIGKILL while Go clients stream
// acknowledged control-plane writes — the admin adds users; owners create
// encrypted and cleartext rooms, then invite and remove members and rekey
// their rooms in a tight loop — restarts it on the same data directory, and
// checks through the client API that every acknowledged write survived and
// that no half-finished change spanning several buckets is visible, as
// kvstore/doc.go promises:
//
//   - every acknowledged user and room is there; each room's members are
//     what the acknowledged invitations and removals say; its epoch is at
//     least the last acknowledged one (rekey, or removal from an encrypted
//     room);
//   - in an encrypted room every listed member fetches its sealed key of
//     the current epoch, the holders of the last acknowledged epoch theirs,
//     and all open the same room key (a crashed rekey's keys are never
//     mixed with the committed ones); a removed member is refused;
//   - rooms_by_member ⊆ members ⊆ rooms: every room in a user's `mine`
//     exists and lists the user, with the same role, epoch and name; every
//     acknowledged membership is in `mine` and no removed one; nothing
//     appears that no one asked for;
//   - a write in flight at the kill is invisible, or visible only in a state
//     its write order allows, and its retry completes it: a user add or
//     invitation succeeds (or answers conflict: already done), a removal
//     succeeds (or answers not found, and the owner rekeys as the service
//     says), a rekey after a crashed one commits; a room created in flight
//     is either absent from its owner's rooms or complete.
//
// Three kill/restart cycles run in one test, each re-checking everything
// acknowledged so far; the counts are logged per cycle.
//
// The crash is a SIGKILL of the process, not a power loss: data that
// reached the operating system's page cache survives it, and JetStream
// acknowledges a KV write once it is in its file store (written to the
// file, not necessarily synced to the disk). So the test shows that no
// acknowledged write lives only in unibusd's memory and, at the random
// points where the kills land, that the order of writes leaves a state the
// checks accept; it says nothing about fsync and a machine that loses
// power.
func TestCrashDurability(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	l := newLedger(t)

	newActor := func(name string) *actor {
		id, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		enc, err := e2e.GenerateEncryptionKey()
		if err != nil {
			t.Fatal(err)
		}
		return &actor{name: name, id: id, enc: enc}
	}
	admin := newActor("admin")
	var owners, members []*actor
	for i := range crashOwners {
		owners = append(owners, newActor(fmt.Sprintf("owner%d", i+1)))
	}
	for i := range crashMembers {
		members = append(members, newActor(fmt.Sprintf("member%d", i+1)))
	}
	everyone := append(append([]*actor{admin}, owners...), members...)
	peers := everyone[1:]

	d := startDaemon(t, "unibusd (first start)", dataDir, admin.pub())
	connectAll(t, d, everyone[:1])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The admin registers owners and members; they register their
	// encryption keys.
	for _, a := range peers {
		if _, err := admin.conn.AddUser(ctx, a.pub(), a.name, false); err != nil {
			t.Fatalf("add %s: %v", a.name, err)
		}
		l.ackUser(a.pub())
	}
	connectAll(t, d, peers)
	for _, a := range peers {
		path := filepath.Join(dir, a.name+".enc")
		if err := e2e.SaveEncryptionKey(path, a.enc); err != nil {
			t.Fatal(err)
		}
		if err := a.conn.SetEncryptionKey(ctx, path); err != nil {
			t.Fatalf("register the encryption key of %s: %v", a.name, err)
		}
	}

	for cycle := 1; cycle <= crashCycles; cycle++ {
		into := stream(t, l, d, cycle, admin, owners, members)
		closeAll(everyone)
		d = startDaemon(t, fmt.Sprintf("unibusd (restart %d)", cycle), dataDir, admin.pub())
		connectAll(t, d, everyone)
		verify(t, l, admin, peers)
		l.mu.Lock()
		checked, fresh, inFlight, limited := summary(l.acked), summary(l.fresh), len(l.pending), l.limited
		l.mu.Unlock()
		found, retried := retryPending(t, l, admin)
		t.Logf("cycle %d: SIGKILL %s into the stream (%d requests refused with 429 and retried), %d writes in flight; "+
			"after the restart, checked all %s acknowledged writes, %s of them new; "+
			"of the writes in flight, %d rooms found complete and %d writes retried to completion",
			cycle, into.Round(time.Millisecond), limited, inFlight, checked, fresh, found, retried)
		if t.Failed() {
			t.FailNow()
		}
	}
	for _, k := range writeKinds {
		if l.acked[k] == 0 {
			t.Errorf("no %s acknowledged in %d cycles: %s", k, crashCycles, summary(l.acked))
		}
	}
	// After the last restart, the rooms still carry messages.
	checkMessages(t, l)
	if code := d.stop(t, syscall.SIGTERM); code != exitOK {
		t.Fatalf("unibusd exit code %d after SIGTERM, want 0\n%s", code, d.describe())
	}
}

// connectAll connects every actor to d.
func connectAll(t *testing.T, d *daemon, actors []*actor) {
	t.Helper()
	for _, a := range actors {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		c, err := client.Connect(ctx, d.url, a.id, client.WithName("e2e-"+a.name), client.WithEncryptionKey(a.enc))
		cancel()
		if err != nil {
			t.Fatalf("connect %s: %v\n%s", a.name, err, d.describe())
		}
		a.conn = c
		t.Cleanup(func() { c.NATS().Close() })
	}
}

// closeAll closes the actors' connections without draining: their server
// is gone.
func closeAll(actors []*actor) {
	for _, a := range actors {
		a.conn.NATS().Close()
		a.conn = nil
	}
}

// stream runs the writers against d until it kills d with SIGKILL, and
// returns how long into the stream the kill came. The kill comes at a
// random moment: in the first cycle early, while the owners create rooms;
// in the next ones after every owner has created its rooms for the cycle,
// while they invite, remove and rekey. The admin adds users throughout.
func stream(t *testing.T, l *ledger, d *daemon, cycle int, admin *actor, owners, members []*actor) time.Duration {
	t.Helper()
	l.mu.Lock()
	l.killed = false
	l.pending = nil
	clear(l.fresh)
	l.limited = 0
	l.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var ready atomic.Int64 // owners that created their rooms
	wg.Go(func() { addUsers(ctx, l, admin, cycle) })
	for k, o := range owners {
		wg.Go(func() { ownRooms(ctx, l, o, k, cycle, members, &ready) })
	}

	began := time.Now()
	if cycle == 1 {
		// Early, while the owners create their first rooms.
		time.Sleep(earlyKill + rand.N(killJitter))
	} else {
		for ready.Load() < int64(len(owners)) && time.Since(began) < maxStream {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(rand.N(killJitter))
	}
	l.mu.Lock()
	l.killed = true
	l.mu.Unlock()
	d.crash(t)
	into := time.Since(began)
	cancel()
	wg.Wait()

	l.mu.Lock()
	defer l.mu.Unlock()
	if n := ready.Load(); cycle > 1 && n < int64(len(owners)) {
		t.Errorf("cycle %d: only %d of %d owners created their rooms within %s", cycle, n, len(owners), maxStream)
	}
	if l.fresh[writeUser] == 0 {
		t.Errorf("cycle %d: no write acknowledged before the kill", cycle)
	}
	return into
}

// addUsers is the admin's writer: new users, one after the other.
func addUsers(ctx context.Context, l *ledger, admin *actor, cycle int) {
	for i := 0; ctx.Err() == nil; i++ {
		id, err := identity.Generate()
		if err != nil {
			l.t.Error(err)
			return
		}
		pub := id.PublicKey()
		opCtx, cancel := context.WithTimeout(ctx, opTimeout)
		err = l.retryLimited(opCtx, func(ctx context.Context) error {
			_, err := admin.conn.AddUser(ctx, pub, fmt.Sprintf("c%d-user%d", cycle, i), false)
			return err
		})
		cancel()
		if err != nil {
			l.failed(pending{kind: writeUser, user: pub}, err)
			return
		}
		l.ackUser(pub)
		select {
		case <-ctx.Done():
		case <-time.After(userAddPause):
		}
	}
}

// ownRooms is owner o's writer. It creates roomsPerCycle rooms, encrypted
// and cleartext in turn, and invites every member to them; then, until
// the stream ends, it goes round its rooms of every cycle, removing or
// inviting one member at a time (a removal from an encrypted room rekeys
// it) and rekeying an encrypted room every third write.
func ownRooms(ctx context.Context, l *ledger, o *actor, k, cycle int, members []*actor, ready *atomic.Int64) {
	// do runs one write with its own bound and reports its success.
	do := func(p pending, write func(context.Context) error) bool {
		opCtx, cancel := context.WithTimeout(ctx, opTimeout)
		defer cancel()
		if err := l.retryLimited(opCtx, write); err != nil {
			l.failed(p, err)
			return false
		}
		return true
	}
	invite := func(r *roomRec, m *actor) bool {
		return do(pending{kind: writeInvite, room: r, member: m}, func(ctx context.Context) error {
			err := join(ctx, r, m)
			if err == nil {
				l.ackInvite(r, m)
			}
			return err
		})
	}
	remove := func(r *roomRec, m *actor) bool {
		return do(pending{kind: writeRemove, room: r, member: m}, func(ctx context.Context) error {
			info, err := o.conn.Remove(ctx, r.id, m.pub())
			if err == nil {
				l.ackRemove(r, m, info.Epoch)
			}
			return err
		})
	}
	rekey := func(r *roomRec) bool {
		return do(pending{kind: writeRekey, room: r}, func(ctx context.Context) error {
			info, err := o.conn.Rekey(ctx, r.id)
			if err == nil {
				l.ackRekey(r, info.Epoch)
			}
			return err
		})
	}

	for i := range roomsPerCycle {
		mode := subjects.ModeE2E
		if (i+k)%2 == 1 {
			mode = subjects.ModeCleartext
		}
		name := fmt.Sprintf("c%d-%s-room%d", cycle, o.name, i)
		var r *roomRec
		ok := do(pending{kind: writeCreate, owner: o, name: name, mode: mode}, func(ctx context.Context) error {
			info, err := o.conn.CreateRoom(ctx, name, mode)
			if err != nil {
				return err
			}
			if info.Mode != mode || info.Owner != o.pub() || info.Name != name {
				l.t.Errorf("create %s room %q by %s answered %+v", mode, name, o.name, info)
			}
			r = &roomRec{id: info.RoomID, name: name, mode: mode, owner: o, epoch: info.Epoch, holders: []*actor{o}}
			l.ackRoom(r)
			return nil
		})
		if !ok {
			return
		}
		for _, m := range members {
			if !invite(r, m) {
				return
			}
		}
	}
	ready.Add(1)

	for i := 0; ctx.Err() == nil; i++ {
		rooms := l.roomsOf(o)
		r := rooms[i%len(rooms)]
		m := members[(i/len(rooms)+k)%len(members)]
		var ok bool
		if l.isMember(r, m) {
			ok = remove(r, m)
		} else {
			ok = invite(r, m)
		}
		if !ok || (r.encrypted() && i%3 == 0 && !rekey(r)) {
			return
		}
	}
}
