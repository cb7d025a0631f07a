package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/clustertest"
	"github.com/unibus/unibus/tests/nodetest"
)

// setup starts a cluster and registers an admin. Rate limiting is off, so
// that every failure under load is one of the faults the test injects.
func setup(t *testing.T) (*clustertest.Cluster, *identity.Identity) {
	t.Helper()
	c := clustertest.Start(t, clustertest.Config{Services: func(s *svc.Config) { s.RateLimit = -1 }})
	admin := nodetest.AddUser(t, c.Node(0), "admin", true)
	return c, admin
}

// connect connects id to the cluster, preferring node first, with fast
// reconnects; with encKey it registers an encryption key.
func connect(t testing.TB, c *clustertest.Cluster, first int, id *identity.Identity, encKey bool) *client.Conn {
	t.Helper()
	return dialClient(t, c.URLs(first), id, encKey)
}

// dialClient connects id to urls (tried in order), with fast reconnects;
// with encKey it registers an encryption key.
func dialClient(t testing.TB, urls string, id *identity.Identity, encKey bool) *client.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := client.Connect(ctx, urls, id, client.WithReconnectWait(50*time.Millisecond),
		client.WithNATSOptions(nats.DontRandomize()))
	if err != nil {
		t.Fatalf("connect to %s: %v", urls, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if encKey {
		if err := conn.SetEncryptionKey(ctx, filepath.Join(t.TempDir(), "id.nk.enc")); err != nil {
			t.Fatalf("set encryption key: %v", err)
		}
	}
	return conn
}

// connectedNode is the index of the node c's connection is on.
func connectedNode(cl *clustertest.Cluster, c *client.Conn) int {
	url := c.NATS().ConnectedUrl()
	for i := range cl.Size() {
		if cl.URL(i) == url {
			return i
		}
	}
	return -1
}

// userWrites adds users through admin from workers goroutines until stop
// is closed, and records each write whose reply said it succeeded.
type userWrites struct {
	mu    sync.Mutex
	acked []string
	// startedAt[i] is when the request of acked[i] was sent; ackedAt[i]
	// when its success arrived.
	startedAt []time.Time
	ackedAt   []time.Time
	failures  atomic.Int64
	wrong     atomic.Int64
	// kinds counts failures by error text (for the log).
	kinds map[string]int
}

// failureKinds summarizes the failures by error.
func (w *userWrites) failureKinds() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.kinds)
}

func (w *userWrites) run(t testing.TB, admin *client.Conn, workers int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id, err := identity.Generate()
				if err != nil {
					t.Error(err)
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				started := time.Now()
				u, err := admin.AddUser(ctx, id.PublicKey(), "load", false)
				cancel()
				switch {
				case err != nil:
					w.failures.Add(1)
					w.mu.Lock()
					if w.kinds == nil {
						w.kinds = map[string]int{}
					}
					w.kinds[errorKind(err)]++
					w.mu.Unlock()
					time.Sleep(20 * time.Millisecond) // pace the load: no hot loop on errors
				case u.Pub != id.PublicKey():
					w.wrong.Add(1)
				default:
					w.mu.Lock()
					w.acked = append(w.acked, u.Pub)
					w.startedAt = append(w.startedAt, started)
					w.ackedAt = append(w.ackedAt, time.Now())
					w.mu.Unlock()
				}
			}
		})
	}
	return &wg
}

// errorKind names a failure by its API code, or else by its text.
func errorKind(err error) string {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		return strconv.Itoa(apiErr.Code)
	}
	return err.Error()
}

// ackedSince counts the acknowledged writes sent after at.
func (w *userWrites) ackedSince(at time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.startedAt {
		if s.After(at) {
			n++
		}
	}
	return n
}

// firstAckAfter is when the first write sent after at was acknowledged.
func (w *userWrites) firstAckAfter(at time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for i, s := range w.startedAt {
		if s.After(at) && (first.IsZero() || w.ackedAt[i].Before(first)) {
			first = w.ackedAt[i]
		}
	}
	return first, !first.IsZero()
}

// checkAllPresent reads every acknowledged user back through the store of
// node i, from the stream leader (never a stale replica). A read that
// fails (a 503 while JetStream settles, a timeout) says nothing about the
// record: it is retried until a shared deadline. Only a record the leader
// says is missing, or that reads back wrong, is a lost write; a record
// still unreadable at the deadline fails the test too, reported apart.
func (w *userWrites) checkAllPresent(t *testing.T, cl *clustertest.Cluster, i int) {
	t.Helper()
	w.mu.Lock()
	acked := append([]string(nil), w.acked...)
	w.mu.Unlock()
	st := cl.Node(i).Store
	deadline := time.Now().Add(readBackTimeout)
	var lost, unreadable []string
	retried := 0
	for _, pub := range acked {
		u, tries, err := readBack(deadline, func(ctx context.Context) (kvstore.User, error) {
			return st.GetUserFromLeader(ctx, pub)
		})
		retried += tries - 1
		switch {
		case errors.Is(err, kvstore.ErrNotFound):
			lost = append(lost, fmt.Sprintf("%s: missing (%v)", pub, err))
		case err != nil:
			unreadable = append(unreadable, fmt.Sprintf("%s: %v", pub, err))
		case u.Pub != pub:
			lost = append(lost, fmt.Sprintf("%s: read back as %+v", pub, u))
		}
	}
	if retried > 0 {
		t.Logf("read-back through n%d: %d reads failed and were retried", i+1, retried)
	}
	if len(lost) > 0 || len(unreadable) > 0 {
		t.Fatalf("of %d acknowledged writes, %d lost (missing or wrong) and %d still unreadable after %s:\nlost: %s\nunreadable: %s",
			len(acked), len(lost), len(unreadable), readBackTimeout, head(lost, 5), head(unreadable, 5))
	}
	t.Logf("all %d acknowledged writes present (read through n%d)", len(acked), i+1)
}

// readBackTimeout bounds a whole read-back pass, retries included.
const readBackTimeout = 60 * time.Second

// readBack calls read until it returns a record, a not-found (an answer
// about the record, not a failure to read it), or deadline passes; it
// returns the last result and how many calls it took.
func readBack[T any](deadline time.Time, read func(context.Context) (T, error)) (T, int, error) {
	for tries := 1; ; tries++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := read(ctx)
		cancel()
		if err == nil || errors.Is(err, kvstore.ErrNotFound) || isNotFound(err) || !time.Now().Before(deadline) {
			return v, tries, err
		}
		time.Sleep(100 * time.Millisecond) // poll interval of the retry
	}
}

// isNotFound reports whether err is the control plane's 404.
func isNotFound(err error) bool {
	var apiErr *client.APIError
	return errors.As(err, &apiErr) && apiErr.Code == subjects.CodeNotFound
}

// head formats at most n of items, saying how many more there are.
func head(items []string, n int) string {
	if len(items) <= n {
		return fmt.Sprint(items)
	}
	return fmt.Sprintf("%v and %d more", items[:n], len(items)-n)
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitAcked waits until at least n writes sent after since (any, for the
// zero time) are acknowledged: the load is flowing.
func (w *userWrites) waitAcked(t *testing.T, since time.Time, n int, d time.Duration, what string) {
	t.Helper()
	eventually(t, d, what, func() error {
		if got := w.ackedSince(since); got < n {
			return fmt.Errorf("%d of %d acknowledged (%d failed: %v)", got, n, w.failures.Load(), w.failureKinds())
		}
		return nil
	})
}

// waitReplicasCurrent waits until the users stream, seen from node i, has
// a leader and every other replica online and current: a restarted node
// has caught up with the writes it missed.
func waitReplicasCurrent(t *testing.T, cl *clustertest.Cluster, i int) {
	t.Helper()
	js, err := jetstream.New(cl.Node(i).StoreConn)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, fmt.Sprintf("users stream current on every replica after the restart of n%d", i+1), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "KV_"+kvstore.BucketUsers)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		ci := info.Cluster
		if ci == nil || ci.Leader == "" {
			return errors.New("no leader")
		}
		if len(ci.Replicas) != cl.Size()-1 {
			return fmt.Errorf("leader %s sees %d other replicas, want %d", ci.Leader, len(ci.Replicas), cl.Size()-1)
		}
		for _, r := range ci.Replicas {
			if r.Offline || !r.Current {
				return fmt.Errorf("replica %s: offline %v, current %v, lag %d", r.Name, r.Offline, r.Current, r.Lag)
			}
		}
		return nil
	})
}
