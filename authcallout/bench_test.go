package authcallout_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

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
		c.Callout.Store = natstest.MemoryCalloutStore{Users: map[string]kvstore.User{id.PublicKey(): {Pub: id.PublicKey()}}}
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

// BenchmarkConnectUnderFlood measures a registered peer's connects
// (connect and close, through the callout) with no flood, the baseline,
// and during a flood of connects with bad keys from 16 goroutines
// (unregistered keys, forged signatures, account keys, garbage
// signatures), in the same run. It reports the good connects' p50 and p99
// latency and the flood's rate.
//
//	go test -run '^$' -bench ConnectUnderFlood -benchtime 300x ./authcallout/
func BenchmarkConnectUnderFlood(b *testing.B) {
	n := nodetest.Run(b)
	good := nodetest.AddUser(b, n, "good", false)
	victim := nodetest.AddUser(b, n, "victim", false)
	for _, flooding := range []bool{false, true} {
		name := "baseline"
		if flooding {
			name = "bad-key-connects"
		}
		b.Run(name, func(b *testing.B) {
			var flood *connectFlood
			if flooding {
				flood = startConnectFlood(b, n.ClientURL(), victim)
			}
			latencies := make([]time.Duration, 0, b.N)
			var before int64
			if flood != nil {
				before = flood.attempts()
			}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				t0 := time.Now()
				nc, err := nats.Connect(n.ClientURL(), nodetest.ConnectOptions(good)...)
				if err != nil {
					b.Fatalf("good connect: %v", err)
				}
				nc.Close()
				latencies = append(latencies, time.Since(t0))
			}
			elapsed := time.Since(start)
			b.StopTimer()
			var flooded int64
			if flood != nil {
				flooded = flood.attempts() - before
				flood.stop()
				if flood.admitted.Load() != 0 {
					b.Errorf("%d bad connects admitted", flood.admitted.Load())
				}
			}
			slices.Sort(latencies)
			pct := func(p float64) float64 {
				return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds())
			}
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
			if flooding {
				b.ReportMetric(float64(flooded)/elapsed.Seconds(), "flood/s")
			}
		})
	}
}
