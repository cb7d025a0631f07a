package authcallout_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
)

// BenchmarkConnect measures connections per second (connect + close) of a
// registered nkey identity through the auth callout, beside the same
// handshake against a server with a static nkey user list (no callout), in
// the same run. Ratio = StaticNkey ns/op ÷ Callout ns/op. CalloutMemory is
// the callout with the allowlist in memory instead of JetStream KV: the
// difference to Callout is the cost of the two KV reads, the rest is the
// callout protocol itself (the server's per-connection key, request and
// response JWTs, and their signatures).
func BenchmarkConnect(b *testing.B) {
	id := nodetest.NewIdentity(b)
	static := natstest.RunServer(b, func(c *embedded.Config) {
		c.Customize = func(o *server.Options) error {
			o.Nkeys = []*server.NkeyUser{{Nkey: id.PublicKey()}}
			return nil
		}
	})
	n := nodetest.Run(b)
	if _, err := n.Store.AddUser(context.Background(), kvstore.User{Pub: id.PublicKey()}); err != nil {
		b.Fatal(err)
	}
	mem := nodetest.Run(b, func(c *node.Config) {
		c.WrapCalloutStore = func(authcallout.Store) authcallout.Store {
			return memoryStore{id.PublicKey(): {Pub: id.PublicKey()}}
		}
	})
	for _, env := range []struct{ name, url string }{
		{"StaticNkey", static.ClientURL()},
		{"Callout", n.ClientURL()},
		{"CalloutMemory", mem.ClientURL()},
	} {
		b.Run(env.name, func(b *testing.B) {
			for b.Loop() {
				nc, err := nats.Connect(env.url, nodetest.ConnectOptions(id)...)
				if err != nil {
					b.Fatal(err)
				}
				nc.Close()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
		})
	}
}

// BenchmarkRevokeToDisconnect measures the time from a revocation written
// to the store to the disconnection of the user's open connection.
func BenchmarkRevokeToDisconnect(b *testing.B) {
	ctx := context.Background()
	n := nodetest.Run(b)
	var total time.Duration
	for b.Loop() {
		id := nodetest.NewIdentity(b)
		if _, err := n.Store.AddUser(ctx, kvstore.User{Pub: id.PublicKey()}); err != nil {
			b.Fatal(err)
		}
		gone := make(chan time.Time, 1)
		nc, err := nats.Connect(n.ClientURL(), append(nodetest.ConnectOptions(id),
			nats.NoReconnect(),
			nats.DisconnectErrHandler(func(*nats.Conn, error) { gone <- time.Now() }))...)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := n.Store.RevokeUser(ctx, id.PublicKey()); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-gone:
			total += at.Sub(start)
		case <-time.After(5 * time.Second):
			b.Fatal("not disconnected within 5s")
		}
		nc.Close()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/revoke")
}

// memoryStore is an in-memory allowlist for the callout (benchmark only).
type memoryStore map[string]kvstore.User

func (m memoryStore) GetUserFromLeader(_ context.Context, pub string) (kvstore.User, error) {
	u, ok := m[pub]
	if !ok {
		return kvstore.User{}, kvstore.ErrNotFound
	}
	return u, nil
}

func (m memoryStore) ListRoomsForEndpoint(context.Context, string) ([]kvstore.RoomRef, error) {
	return []kvstore.RoomRef{}, nil
}
