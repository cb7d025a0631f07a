package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/clustertest"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestKickRevokedDuringMembershipFloodAcrossNodes: on a three-node cluster,
// while one user adds others to rooms and removes them in a loop from
// every node, none of those members is ever disconnected (a membership
// change touches no connection: permissions name no room), and revoking a
// user connected to every node disconnects it from all of them within a
// second of the revocation being stored, every time.
//
// The bound is counted from the revocation's commit (the time JetStream
// stored it): how long the write itself waits behind the flood's writes
// is JetStream's, the same whatever the watchers do, and is logged beside.
func TestKickRevokedDuringMembershipFloodAcrossNodes(t *testing.T) {
	const (
		writers     = 6
		members     = 30
		revocations = 6
		bound       = time.Second
	)
	cl := clustertest.Start(t, clustertest.Config{})
	flood := startFlood(t, cl, writers, members)
	defer flood.stop()
	// The flood is on: every member has been added and removed once on
	// average.
	deadline := time.Now().Add(60 * time.Second)
	for flood.changes.Load() < 2*members {
		if time.Now().After(deadline) {
			t.Fatalf("the flood made %d membership changes in 60s", flood.changes.Load())
		}
		time.Sleep(10 * time.Millisecond) // poll interval; the deadline bounds the wait
	}

	before := flood.changes.Load()
	users := usersBucket(t, cl)
	var fromCommit, fromCall []time.Duration
	for i := range revocations {
		target := nodetest.AddUser(t, cl.Node(i%cl.Size()), "target", false)
		commit, call := revokeEverywhere(t, cl, i%cl.Size(), users, target)
		fromCommit, fromCall = append(fromCommit, commit), append(fromCall, call)
	}
	changes, kicks := flood.stop()
	slices.Sort(fromCommit)
	slices.Sort(fromCall)
	t.Logf("during the flood (%d membership changes, %d of them while measuring; %d kicks of members), over %d revocations: "+
		"commit → disconnected on every node: median %s, max %s; revoke call → disconnected: median %s, max %s",
		changes, changes-before, kicks, revocations,
		fromCommit[len(fromCommit)/2].Round(time.Millisecond), fromCommit[len(fromCommit)-1].Round(time.Millisecond),
		fromCall[len(fromCall)/2].Round(time.Millisecond), fromCall[len(fromCall)-1].Round(time.Millisecond))
	if worst := fromCommit[len(fromCommit)-1]; worst > bound {
		t.Errorf("a revocation disconnected every node %s after its commit during the flood, want within %s", worst, bound)
	}
	if changes <= before {
		t.Errorf("the flood changed no membership while the revocations were measured")
	}
	if kicks != 0 {
		t.Errorf("the membership flood disconnected members %d times, want never", kicks)
	}
}

// usersBucket is the users bucket, read as a store-user connection sees
// it (for the time a record was stored).
func usersBucket(t *testing.T, cl *clustertest.Cluster) jetstream.KeyValue {
	t.Helper()
	nc, err := cl.Node(0).StoreUserConn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, kvstore.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// flood adds members to rooms and removes them again in a loop, through
// the stores of every node, and counts the members' disconnections (the
// kicks the flood causes, which should be none).
type flood struct {
	t        testing.TB
	quit     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
	changes  atomic.Int64
	kicks    atomic.Int64
	errs     chan error
}

// startFlood registers an owner and members users, each connected to a
// node in turn and reconnecting if kicked; the owner gets one cleartext
// room per writer, and writers goroutines (on the nodes in turn) add every
// member to their room and remove it again, round after round. A write
// that fails with a transient JetStream error is retried.
func startFlood(t *testing.T, cl *clustertest.Cluster, writers, members int) *flood {
	t.Helper()
	ctx := context.Background()
	f := &flood{t: t, quit: make(chan struct{}), errs: make(chan error, writers)}
	owner := nodetest.AddUser(t, cl.Node(0), "flooder", false)
	ids := make([]*identity.Identity, members)
	for i := range ids {
		ids[i] = nodetest.AddUser(t, cl.Node(0), "member", false)
		nc, err := nats.Connect(cl.URL(i%cl.Size()), append(nodetest.ConnectOptions(ids[i]),
			nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.IgnoreAuthErrorAbort(), nats.DontRandomize(),
			nats.DisconnectErrHandler(func(*nats.Conn, error) { f.kicks.Add(1) }))...)
		if err != nil {
			t.Fatalf("connect member: %v", err)
		}
		t.Cleanup(nc.Close)
	}
	for w := range writers {
		st := cl.Node(w % cl.Size()).Store
		id, salt := subjects.NewRoomID(owner.PublicKey(), subjects.ModeCleartext)
		var room kvstore.Room
		eventually(t, 30*time.Second, "create a room", func() error {
			var err error
			room, err = st.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeCleartext, Owner: owner.PublicKey()}, kvstore.SealedKey{})
			return err
		})
		f.wg.Go(func() { f.write(ctx, st, room.ID, ids) })
	}
	return f
}

// write is one writer: add and remove every member, until stop. A failed
// write (a leader change under load answers 503 for a while) is retried
// after a pause; one still failing after 20 s fails the test.
func (f *flood) write(ctx context.Context, st *kvstore.Store, roomID string, ids []*identity.Identity) {
	retry := func(op func() error) bool {
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := op()
			if err == nil {
				return true
			}
			if time.Now().After(deadline) {
				f.errs <- err
				return false
			}
			select {
			case <-f.quit:
				return false
			case <-time.After(50 * time.Millisecond): // pause before a retry; the deadline bounds them
			}
		}
	}
	for {
		for _, m := range ids {
			select {
			case <-f.quit:
				return
			default:
			}
			added := retry(func() error {
				_, err := st.AddMember(ctx, roomID, m.PublicKey(), subjects.RoleMember, 0, kvstore.SealedKey{})
				if err != nil && errors.Is(err, kvstore.ErrExists) {
					return nil // a retried write that had gone through
				}
				return err
			})
			if !added || !retry(func() error {
				err := st.RemoveMember(ctx, roomID, m.PublicKey())
				if err != nil && errors.Is(err, kvstore.ErrNotFound) {
					return nil
				}
				return err
			}) {
				return
			}
			f.changes.Add(2)
		}
	}
}

// stop ends the flood, fails the test on a write that kept failing, and
// returns the changes made and the kicks counted.
func (f *flood) stop() (changes, kicks int64) {
	f.stopOnce.Do(func() {
		close(f.quit)
		f.wg.Wait()
		select {
		case err := <-f.errs:
			f.t.Errorf("membership flood: %v", err)
		default:
		}
	})
	return f.changes.Load(), f.kicks.Load()
}

// revokeEverywhere connects target to every node, revokes it through node
// via's store, and returns how long after the revocation's commit, and
// after the call that made it, its last connection was closed. It fails
// the test past 10 s.
func revokeEverywhere(t *testing.T, cl *clustertest.Cluster, via int, users jetstream.KeyValue, target *identity.Identity) (fromCommit, fromCall time.Duration) {
	t.Helper()
	closed := make(chan time.Time, cl.Size())
	for i := range cl.Size() {
		nc, err := nats.Connect(cl.URL(i), append(nodetest.ConnectOptions(target), nats.NoReconnect(),
			nats.ClosedHandler(func(*nats.Conn) { closed <- time.Now() }))...)
		if err != nil {
			t.Fatalf("connect target to n%d: %v", i+1, err)
		}
		defer nc.Close()
	}
	start := time.Now()
	eventually(t, 10*time.Second, "revoke", func() error {
		_, err := cl.Node(via).Store.RevokeUser(context.Background(), target.PublicKey())
		return err
	})
	var last time.Time
	deadline := time.After(10 * time.Second)
	for range cl.Size() {
		select {
		case at := <-closed:
			last = at
		case <-deadline:
			t.Fatalf("revoked user still connected 10s after the revocation")
		}
	}
	var committed time.Time
	eventually(t, 10*time.Second, "read the revocation back", func() error {
		e, err := users.Get(context.Background(), target.PublicKey())
		if err != nil {
			return err
		}
		var u kvstore.User
		if err := json.Unmarshal(e.Value(), &u); err != nil {
			return err
		}
		if !u.Revoked() {
			return errors.New("a replica that has not seen the revocation answered")
		}
		committed = e.Created()
		return nil
	})
	return last.Sub(committed), last.Sub(start)
}
