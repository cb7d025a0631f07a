package authcallout_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// revokeBound is how long a revocation may take to disconnect, flood or
// not.
const revokeBound = time.Second

// TestRevocationDuringMembershipFlood: while one user adds others to
// rooms and removes them in a loop, none of them is disconnected (no
// membership change touches a connection), and revoking a user still
// disconnects it within revokeBound, every time.
func TestRevocationDuringMembershipFlood(t *testing.T) {
	const members = 24
	n := nodetest.Run(t)
	flood := startMembershipFlood(t, []*node.Node{n}, 4, members)
	defer flood.stop()
	// The flood is on: every member has been added and removed twice on
	// average.
	flood.waitChanges(t, 4*members)
	before := flood.changes.Load()

	var took []time.Duration
	for range 6 {
		target := nodetest.AddUser(t, n, "target", false)
		took = append(took, revokeAndWait(t, n, target, n.ClientURL()))
	}
	after, kicks := flood.stop()
	reportRevocations(t, took, before, after, kicks)
}

// membershipFlood adds members to rooms and removes them again in a loop,
// through the store (the services' writes), and counts the disconnections
// of the members it touches: the kicks the flood causes, which should be
// none.
type membershipFlood struct {
	stopOnce sync.Once
	quit     chan struct{}
	wg       sync.WaitGroup
	changes  atomic.Int64
	kicks    atomic.Int64
	errs     chan error
	t        testing.TB
}

// startMembershipFlood registers an owner and members users (each
// connected, to the nodes in turn, and reconnecting if kicked), gives the
// owner one cleartext room per writer, and starts writers goroutines that
// each add every member to its room and remove it again, round after round,
// through the stores of the nodes in turn.
func startMembershipFlood(t testing.TB, nodes []*node.Node, writers, members int) *membershipFlood {
	t.Helper()
	ctx := context.Background()
	f := &membershipFlood{quit: make(chan struct{}), errs: make(chan error, writers), t: t}
	owner := nodetest.AddUser(t, nodes[0], "flooder", false)
	ids := make([]*identity.Identity, members)
	for i := range ids {
		ids[i] = nodetest.AddUser(t, nodes[0], "member", false)
		nc, err := nats.Connect(nodes[i%len(nodes)].ClientURL(), append(nodetest.ConnectOptions(ids[i]),
			nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.IgnoreAuthErrorAbort(),
			nats.DisconnectErrHandler(func(*nats.Conn, error) { f.kicks.Add(1) }))...)
		if err != nil {
			t.Fatalf("connect member: %v", err)
		}
		t.Cleanup(nc.Close)
	}
	for w := range writers {
		st := nodes[w%len(nodes)].Store
		id, salt := subjects.NewRoomID(owner.PublicKey(), subjects.ModeCleartext)
		room, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeCleartext, Owner: owner.PublicKey()}, kvstore.SealedKey{})
		if err != nil {
			t.Fatalf("create room: %v", err)
		}
		f.wg.Go(func() {
			for {
				for _, m := range ids {
					select {
					case <-f.quit:
						return
					default:
					}
					if _, err := st.AddMember(ctx, room.ID, m.PublicKey(), subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
						f.errs <- err
						return
					}
					if err := st.RemoveMember(ctx, room.ID, m.PublicKey()); err != nil {
						f.errs <- err
						return
					}
					f.changes.Add(2)
				}
			}
		})
	}
	return f
}

// waitChanges waits until the flood has made n membership changes.
func (f *membershipFlood) waitChanges(t testing.TB, n int64) {
	t.Helper()
	waitFor(t, 30*time.Second, "the flood changes memberships", func() bool { return f.changes.Load() >= n })
}

// stop ends the flood, fails the test on a write error, and returns the
// changes made and the kicks counted.
func (f *membershipFlood) stop() (changes, kicks int64) {
	f.stopOnce.Do(func() {
		close(f.quit)
		f.wg.Wait()
		select {
		case err := <-f.errs:
			f.t.Errorf("membership flood: %v", err)
		default:
		}
		f.t.Logf("membership flood: %d changes, %d kicks of members", f.changes.Load(), f.kicks.Load())
	})
	return f.changes.Load(), f.kicks.Load()
}

// revokeAndWait connects target to every url (one connection each),
// revokes it through n's store and returns how long until the last of its
// connections was closed. It fails the test past 10 s.
func revokeAndWait(t testing.TB, n *node.Node, target *identity.Identity, urls ...string) time.Duration {
	t.Helper()
	closed := make(chan time.Time, len(urls))
	for _, url := range urls {
		nc, err := nats.Connect(url, append(nodetest.ConnectOptions(target), nats.NoReconnect(),
			nats.ClosedHandler(func(*nats.Conn) { closed <- time.Now() }))...)
		if err != nil {
			t.Fatalf("connect target to %s: %v", url, err)
		}
		defer nc.Close()
	}
	start := time.Now()
	if _, err := n.Store.RevokeUser(context.Background(), target.PublicKey()); err != nil {
		t.Fatal(err)
	}
	var last time.Time
	deadline := time.After(10 * time.Second)
	for range urls {
		select {
		case at := <-closed:
			last = at
		case <-deadline:
			t.Fatalf("revoked user still connected 10s after the revocation")
		}
	}
	return last.Sub(start)
}

// reportRevocations logs the median and the maximum of took and fails the
// test if any is beyond revokeBound, if the flood did not go on changing
// memberships while the revocations were measured (from changes before to
// after), or if it kicked any member.
func reportRevocations(t testing.TB, took []time.Duration, before, after, kicks int64) {
	t.Helper()
	slices.Sort(took)
	t.Logf("revoke → disconnect during the flood: median %s, max %s over %d revocations (%d membership changes meanwhile)",
		took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), len(took), after-before)
	if took[len(took)-1] > revokeBound {
		t.Errorf("a revocation took %s to disconnect during the flood, want within %s", took[len(took)-1], revokeBound)
	}
	if after <= before {
		t.Errorf("the flood changed no membership while the revocations were measured")
	}
	if kicks != 0 {
		t.Errorf("the membership flood disconnected members %d times, want never", kicks)
	}
}
