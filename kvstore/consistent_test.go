package kvstore_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// indexDirectGet is the direct get subject of the rooms-by-member index,
// which any replica answers.
const indexDirectGet = "$JS.API.DIRECT.GET.KV_" + kvstore.BucketRoomsByMember

// roomIDs returns the sorted room IDs of refs.
func roomIDs(refs []kvstore.RoomRef) []string {
	ids := make([]string, 0, len(refs))
	for _, r := range refs {
		ids = append(ids, r.RoomID)
	}
	slices.Sort(ids)
	return ids
}

// roomWriter makes rooms: *kvstore.Store, or a case's suiteStore.
type roomWriter interface {
	CreateRoom(ctx context.Context, r kvstore.Room, ownerKey kvstore.SealedKey) (kvstore.Room, error)
	AddMember(ctx context.Context, roomID, pub, role string, epoch uint64, key kvstore.SealedKey) (kvstore.Member, error)
}

// newRoom creates a cleartext room owned by owner with members.
func newRoom(t *testing.T, st roomWriter, owner string, members ...string) string {
	t.Helper()
	ctx := context.Background()
	id, salt := subjects.NewRoomID(owner, subjects.ModeCleartext)
	r, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeCleartext, Owner: owner, Name: "r"}, kvstore.SealedKey{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if _, err := st.AddMember(ctx, r.ID, m, subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
			t.Fatal(err)
		}
	}
	return r.ID
}

// TestListRoomsFromLeader: the leader read returns what the plain read
// returns once replicas agree, at R1 and R3: rooms with roles, nothing for
// a user in none, nothing after the last removal.
func TestListRoomsFromLeader(t *testing.T) {
	for _, b := range storeBackends {
		t.Run(b.name, func(t *testing.T) {
			e := b.start(t)
			st := e.open(t, kvstore.Config{})
			ctx := context.Background()
			owner, member, stranger := newUserKey(t), newUserKey(t), newUserKey(t)
			r1 := newRoom(t, st, owner, member)
			r2 := newRoom(t, st, owner, member)
			st.synced()
			for _, pub := range []string{owner, member, stranger} {
				got, err := st.ListRoomsForEndpointFromLeader(ctx, pub)
				if err != nil {
					t.Fatal(err)
				}
				want, err := st.ListRoomsForEndpoint(ctx, pub)
				if err != nil {
					t.Fatal(err)
				}
				sortRefs := func(refs []kvstore.RoomRef) {
					slices.SortFunc(refs, func(a, b kvstore.RoomRef) int { return strings.Compare(a.RoomID, b.RoomID) })
				}
				sortRefs(got)
				sortRefs(want)
				if got == nil || !slices.EqualFunc(got, want, func(a, b kvstore.RoomRef) bool {
					return a.RoomID == b.RoomID && a.Subject == b.Subject && a.Role == b.Role && a.Mode == b.Mode &&
						a.Owner == b.Owner && a.Name == b.Name && a.Epoch == b.Epoch && slices.Equal(a.Salt, b.Salt)
				}) {
					t.Fatalf("leader read %+v, plain read %+v", got, want)
				}
			}
			for _, r := range []string{r1, r2} {
				if err := st.RemoveMember(ctx, r, member); err != nil {
					t.Fatal(err)
				}
			}
			// No sync: the leader read sees the removals at once.
			got, err := st.ListRoomsForEndpointFromLeader(ctx, member)
			if err != nil || len(got) != 0 {
				t.Fatalf("rooms after every removal = %v, %v; want none", got, err)
			}
			if _, err := st.ListRoomsForEndpointFromLeader(ctx, "not a key"); !errors.Is(err, kvstore.ErrInvalid) {
				t.Fatalf("bad key: %v, want ErrInvalid", err)
			}
		})
	}
}

// snapshot is a direct get's answer, message by message, as a replica
// sent it.
type snapshot []*nats.Msg

// takeSnapshot asks the index's direct get for pub's entries, as the
// callout's plain read does, and keeps the answer.
func takeSnapshot(t *testing.T, nc *nats.Conn, pub string) snapshot {
	t.Helper()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(indexDirectGet, inbox, []byte(`{"multi_last":["$KV.`+kvstore.BucketRoomsByMember+`.`+pub+`.*"]}`)); err != nil {
		t.Fatal(err)
	}
	var snap snapshot
	for {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("direct get: %v", err)
		}
		snap = append(snap, msg)
		if len(msg.Data) == 0 && msg.Header.Get("Status") != "" {
			return snap
		}
	}
}

// replay sends the snapshot as the answer to a request.
func (s snapshot) replay(nc *nats.Conn, reply string) error {
	for _, m := range s {
		if err := nc.PublishMsg(&nats.Msg{Subject: reply, Header: m.Header, Data: m.Data}); err != nil {
			return err
		}
	}
	return nil
}

// TestListRoomsFromLeaderRefusesStaleReplica plays a replica that has not
// seen a removal yet, deterministically: the index stream's own direct
// gets are turned off and a responder answers them with a snapshot taken
// before the removal. The plain read believes it (the member would be
// admitted to the room it just left); the leader read does not: it asks
// again, fails closed while the replica stays behind, and answers right
// once the replica has caught up.
func TestListRoomsFromLeaderRefusesStaleReplica(t *testing.T) {
	st, js := openStore(t, kvstore.Config{Replicas: 1})
	nc := js.Conn()
	ctx := context.Background()
	owner, member := newUserKey(t), newUserKey(t)
	left := newRoom(t, st, owner, member)
	stays := newRoom(t, st, owner, member)
	stale := takeSnapshot(t, nc, member)
	if err := st.RemoveMember(ctx, left, member); err != nil {
		t.Fatal(err)
	}
	fresh := takeSnapshot(t, nc, member)

	// The stream's replicas stop answering direct gets; the responder
	// below is the only one.
	stream, err := js.Stream(ctx, "KV_"+kvstore.BucketRoomsByMember)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var asked, staleAnswers atomic.Int64
	staleAnswers.Store(1 << 30)
	sub, err := nc.Subscribe(indexDirectGet, func(m *nats.Msg) {
		answer := fresh
		if asked.Add(1) <= staleAnswers.Load() {
			answer = stale
		}
		if err := answer.replay(nc, m.Reply); err != nil {
			t.Error(err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	plain, err := st.ListRoomsForEndpoint(ctx, member)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := roomIDs(plain), roomIDs([]kvstore.RoomRef{{RoomID: left}, {RoomID: stays}}); !slices.Equal(got, want) {
		t.Fatalf("the stale replica is not stale: the plain read lists %v, want %v", got, want)
	}

	// A replica that stays behind: an error within the deadline, after
	// asking again.
	asked.Store(0)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	refs, err := st.ListRoomsForEndpointFromLeader(short, member)
	cancel()
	if err == nil {
		t.Fatalf("leader read from a replica behind = %v, want an error", roomIDs(refs))
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("leader read failed after %s, want within its deadline", took)
	}
	if n := asked.Load(); n < 3 {
		t.Fatalf("the replica was asked %d times, want it asked again", n)
	}

	// A replica that catches up after two answers: the right rooms.
	asked.Store(0)
	staleAnswers.Store(2)
	refs, err = st.ListRoomsForEndpointFromLeader(ctx, member)
	if err != nil {
		t.Fatal(err)
	}
	if got := roomIDs(refs); !slices.Equal(got, []string{stays}) {
		t.Fatalf("leader read lists %v, want only %v (not %v, left)", got, stays, left)
	}
	if n := asked.Load(); n != 3 {
		t.Fatalf("the replica was asked %d times, want 3", n)
	}
}

// TestListRoomsFromLeaderManyRooms: a member of more rooms than one direct
// get returns is read from the leader key by key, removals included.
func TestListRoomsFromLeaderManyRooms(t *testing.T) {
	if testing.Short() {
		t.Skip("a thousand rooms: not in -short")
	}
	st, _ := openStore(t, kvstore.Config{Replicas: 1, Memory: true})
	ctx := context.Background()
	member := newUserKey(t)
	const rooms = 1030
	var want []string
	for i := range rooms {
		id := newRoom(t, st, member)
		if i%100 == 0 {
			if err := st.RemoveMember(ctx, id, member); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want = append(want, id)
	}
	slices.Sort(want)
	refs, err := st.ListRoomsForEndpointFromLeader(ctx, member)
	if err != nil {
		t.Fatal(err)
	}
	if got := roomIDs(refs); !slices.Equal(got, want) {
		t.Fatalf("leader read lists %d rooms, want %d", len(got), len(want))
	}
	for _, r := range refs {
		if r.Role != subjects.RoleOwner || r.Subject == "" {
			t.Fatalf("room ref %+v", r)
		}
	}
}

// BenchmarkListRoomsFromLeader measures the admission read of a member of
// ten rooms, as fresh as the leader knows it, beside the plain read that
// any replica answers (the floor), in the same loop, at R1 and on a
// three-node cluster (R3, read through a server that is not necessarily
// the leader). Ratio = leader ns ÷ plain ns.
//
//	go test -run '^$' -bench ListRoomsFromLeader -benchtime 2000x ./kvstore/
func BenchmarkListRoomsFromLeader(b *testing.B) {
	for _, backend := range []struct {
		name string
		js   func(b *testing.B) (jetstream.JetStream, int)
	}{
		{"R1", func(b *testing.B) (jetstream.JetStream, int) {
			_, js := natstest.JetStream(b, natstest.RunServer(b).ClientURL())
			return js, 1
		}},
		{"R3", func(b *testing.B) (jetstream.JetStream, int) {
			c := natstest.RunCluster(b, 3)
			_, js := natstest.JetStream(b, c.Servers[1].ClientURL())
			return js, 3
		}},
	} {
		b.Run(backend.name, func(b *testing.B) {
			js, replicas := backend.js(b)
			ctx := context.Background()
			st, err := kvstore.Open(ctx, js, kvstore.Config{Replicas: replicas})
			if err != nil {
				b.Fatal(err)
			}
			owner, member := newUserKey(b), newUserKey(b)
			for range 10 {
				id, salt := subjects.NewRoomID(owner, subjects.ModeCleartext)
				if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeCleartext, Owner: owner}, kvstore.SealedKey{}); err != nil {
					b.Fatal(err)
				}
				// At R3 a follower may not have the room yet: retry.
				for {
					_, err := st.AddMember(ctx, id, member, subjects.RoleMember, 0, kvstore.SealedKey{})
					if err == nil {
						break
					}
					if !errors.Is(err, kvstore.ErrNotFound) {
						b.Fatal(err)
					}
				}
			}
			var leader, plain time.Duration
			for b.Loop() {
				start := time.Now()
				refs, err := st.ListRoomsForEndpointFromLeader(ctx, member)
				if err != nil || len(refs) != 10 {
					b.Fatalf("leader read: %d rooms, %v", len(refs), err)
				}
				leader += time.Since(start)
				start = time.Now()
				if _, err := st.ListRoomsForEndpoint(ctx, member); err != nil {
					b.Fatal(err)
				}
				plain += time.Since(start)
			}
			n := float64(b.N)
			b.ReportMetric(float64(leader.Nanoseconds())/n, "leader-ns/read")
			b.ReportMetric(float64(plain.Nanoseconds())/n, "plain-ns/read")
			b.ReportMetric(float64(leader)/float64(plain), "ratio")
		})
	}
}
