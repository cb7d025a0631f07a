package cluster_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/identity"
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
					time.Sleep(20 * time.Millisecond)
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
// node i, from the stream leader (never a stale replica).
func (w *userWrites) checkAllPresent(t *testing.T, cl *clustertest.Cluster, i int) {
	t.Helper()
	w.mu.Lock()
	acked := append([]string(nil), w.acked...)
	w.mu.Unlock()
	st := cl.Node(i).Store
	missing := 0
	for _, pub := range acked {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		u, err := st.GetUserFromLeader(ctx, pub)
		cancel()
		if err != nil || u.Pub != pub {
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged user %s: %+v, %v", pub, u, err)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", missing, len(acked))
	}
	t.Logf("all %d acknowledged writes present (read through n%d)", len(acked), i+1)
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
