package client

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// keyringEnv is a TLS bus, one connected owner and a room of its, for the
// key ring's own tests.
type keyringEnv struct {
	bus  *nodetest.Bus
	c    *Conn
	room subjects.RoomInfo
}

func newKeyringEnv(t *testing.T, mode string) *keyringEnv {
	t.Helper()
	ctx := context.Background()
	bus := nodetest.NewBus(t)
	id := nodetest.AddUser(t, bus.Node, "alice", false)
	c, err := Connect(ctx, bus.Node.ClientURL(), id, WithCA(bus.CA))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetEncryptionKey(ctx, filepath.Join(t.TempDir(), "alice.enc")); err != nil {
		t.Fatal(err)
	}
	room, err := c.CreateRoom(ctx, "r", mode)
	if err != nil {
		t.Fatal(err)
	}
	return &keyringEnv{bus: bus, c: c, room: room}
}

// requests returns how many requests the rooms service got on subject.
func (e *keyringEnv) requests(t *testing.T, subject string) int {
	t.Helper()
	for _, ep := range e.bus.Node.Services().Rooms().Stats().Endpoints {
		if ep.Subject == subject {
			return ep.NumRequests
		}
	}
	t.Fatalf("no endpoint %s", subject)
	return 0
}

// requestsReach waits until the rooms service counted at least want
// requests on subject since base (it counts a request once it answered
// it, a moment after the caller got the answer) and returns the count.
func (e *keyringEnv) requestsReach(t *testing.T, subject string, base, want int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := e.requests(t, subject) - base
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond) // polling the service's counters
	}
}

// age moves the room's membership answer about pub d into the past.
func (e *keyringEnv) age(pub string, d time.Duration) {
	k := e.c.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	rc := k.rooms[e.room.RoomID]
	a := rc.members[pub]
	a.at = a.at.Add(-d)
	rc.members[pub] = a
}

// TestKeyringMembershipAnswers: a cleartext room's membership answers are
// asked one sender at a time; positive ones hold memberTTL, negative ones
// memberRetryInterval; a reconnect or a fresh room state drops them;
// concurrent questions about one sender share a request; the cache is
// bounded.
func TestKeyringMembershipAnswers(t *testing.T) {
	e := newKeyringEnv(t, subjects.ModeCleartext)
	k, roomID := e.c.keys, e.room.RoomID
	self, stranger := e.c.id.PublicKey(), nodetest.NewIdentity(t).PublicKey()
	asked := e.requests(t, subjects.RoomsMembers)
	wantAsked := func(n int, what string) {
		t.Helper()
		if got := e.requestsReach(t, subjects.RoomsMembers, asked, n); got != n {
			t.Fatalf("%s: %d membership requests, want %d", what, got, n)
		}
	}

	for range 100 {
		if k.IsMember(roomID, stranger) {
			t.Fatal("a stranger is a member")
		}
	}
	wantAsked(1, "a stranger's frames within the retry interval")
	e.age(stranger, memberRetryInterval-time.Millisecond)
	k.IsMember(roomID, stranger)
	wantAsked(1, "just before the retry interval ends")
	e.age(stranger, time.Millisecond)
	if k.IsMember(roomID, stranger) {
		t.Fatal("a stranger is a member")
	}
	wantAsked(2, "after the retry interval")

	for range 100 {
		if !k.IsMember(roomID, self) {
			t.Fatal("the owner is not a member")
		}
	}
	wantAsked(3, "a member's frames")
	e.age(self, memberTTL-time.Millisecond)
	k.IsMember(roomID, self)
	wantAsked(3, "just before the answer expires")
	e.age(self, time.Millisecond)
	k.IsMember(roomID, self)
	wantAsked(4, "after the answer expired")

	e.c.reconnects.fire()
	k.IsMember(roomID, self)
	wantAsked(5, "after a reconnect")
	if _, err := e.c.GetRoom(context.Background(), roomID); err != nil {
		t.Fatal(err)
	}
	k.IsMember(roomID, self)
	wantAsked(6, "after a fresh room state")

	newcomer := nodetest.NewIdentity(t).PublicKey()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { k.IsMember(roomID, newcomer) })
	}
	wg.Wait()
	// One shared request; a goroutine that arrives after it ended finds
	// the answer cached.
	wantAsked(7, "8 concurrent questions about one sender")

	k.mu.Lock()
	rc := k.rooms[roomID]
	for i := range maxMemberAnswers {
		rc.members["sender-"+strconv.Itoa(i)] = memberAnswer{at: time.Now()}
	}
	k.mu.Unlock()
	k.IsMember(roomID, nodetest.NewIdentity(t).PublicKey())
	k.mu.Lock()
	n := len(rc.members)
	k.mu.Unlock()
	if n > maxMemberAnswers {
		t.Fatalf("%d membership answers cached, bound %d", n, maxMemberAnswers)
	}
}

// TestKeyringKeyFailureNotRetriedAtOnce: a room key that cannot be fetched
// (here, of an epoch that does not exist) is asked for again at most once
// per roomRefreshInterval, however often receivers need it.
func TestKeyringKeyFailureNotRetriedAtOnce(t *testing.T) {
	e := newKeyringEnv(t, subjects.ModeE2E)
	k, roomID := e.c.keys, e.room.RoomID
	asked := e.requests(t, subjects.RoomsKey)
	var first error
	for i := range 50 {
		_, err := k.RoomKey(roomID, 99)
		if err == nil {
			t.Fatal("a key of epoch 99")
		}
		if i == 0 {
			first = err
		} else if !errors.Is(err, first) && err.Error() != first.Error() {
			t.Fatalf("failure %d = %v, want the first one again (%v)", i, err, first)
		}
	}
	if n := e.requestsReach(t, subjects.RoomsKey, asked, 1); n != 1 {
		t.Fatalf("%d key requests for 50 needs within the interval, want 1", n)
	}
	k.mu.Lock()
	f := k.rooms[roomID].keyFailures[99]
	f.at = f.at.Add(-roomRefreshInterval)
	k.rooms[roomID].keyFailures[99] = f
	k.mu.Unlock()
	if _, err := k.RoomKey(roomID, 99); err == nil {
		t.Fatal("a key of epoch 99")
	}
	if n := e.requestsReach(t, subjects.RoomsKey, asked, 2); n != 2 {
		t.Fatalf("%d key requests after the interval, want 2", n)
	}
}

// TestKeyringRefreshCoalesced: many frames needing a refresh of one room
// at once share one fetch; the next waits for the interval.
func TestKeyringRefreshCoalesced(t *testing.T) {
	e := newKeyringEnv(t, subjects.ModeE2E)
	k, roomID := e.c.keys, e.room.RoomID
	gets := e.requests(t, subjects.RoomsGet)
	ctx := context.Background()
	arrived := time.Now()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if err := k.refresh(ctx, roomID, arrived, true); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := e.requestsReach(t, subjects.RoomsGet, gets, 1); n != 1 {
		t.Fatalf("%d fetches for 32 frames at once, want 1", n)
	}
	start := time.Now()
	if err := k.refresh(ctx, roomID, time.Now(), true); err != nil {
		t.Fatal(err)
	}
	if n := e.requestsReach(t, subjects.RoomsGet, gets, 2); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
	k.mu.Lock()
	first, second := arrived, k.refreshes[roomID].start
	k.mu.Unlock()
	if second.Sub(first) < roomRefreshInterval-10*time.Millisecond || time.Since(start) > roomRefreshInterval+keyringTimeout {
		t.Fatalf("the second fetch started %s after the first, want about %s", second.Sub(first), roomRefreshInterval)
	}
}
