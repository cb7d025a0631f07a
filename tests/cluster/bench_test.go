package cluster_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/clustertest"
	"github.com/unibus/unibus/tests/nodetest"
)

// benchClients is the number of concurrent clients of BenchmarkControlPlane.
const benchClients = 8

// BenchmarkControlPlane measures signed rooms.mine requests per second
// from 8 concurrent clients on a single node with R1 buckets and on the
// 3-node cluster with R3 buckets (clients spread over the nodes), in the
// same run. Rate limiting is off: the figure is the services' capacity.
func BenchmarkControlPlane(b *testing.B) {
	noLimit := func(s *svc.Config) { s.RateLimit = -1 }
	b.Run("single-R1", func(b *testing.B) {
		n := nodetest.Run(b, func(c *node.Config) { noLimit(&c.Services) })
		clients := make([]*client.Conn, benchClients)
		for i := range clients {
			clients[i] = dialClient(b, n.ClientURL(), nodetest.AddUser(b, n, "bench", false), false)
		}
		runMine(b, clients)
	})
	b.Run("cluster-R3", func(b *testing.B) {
		cl := clustertest.Start(b, clustertest.Config{Services: noLimit})
		clients := make([]*client.Conn, benchClients)
		for i := range clients {
			clients[i] = connect(b, cl, i%cl.Size(), nodetest.AddUser(b, cl.Node(0), "bench", false), false)
		}
		runMine(b, clients)
	})
}

// runMine runs rooms.mine from every client at once and reports req/s.
func runMine(b *testing.B, clients []*client.Conn) {
	var next atomic.Int64
	b.SetParallelism((len(clients) + 1) / 2) // GOMAXPROCS 2 → len(clients) goroutines
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := clients[int(next.Add(1)-1)%len(clients)]
		ctx := context.Background()
		for pb.Next() {
			if _, err := c.ListMyRooms(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// BenchmarkRecoverAfterKill measures the time from the kill of the node a
// client is connected to until a control-plane write sent after the kill
// succeeds: the client notices, reconnects to another node and resends.
func BenchmarkRecoverAfterKill(b *testing.B) {
	cl := clustertest.Start(b, clustertest.Config{Services: func(s *svc.Config) { s.RateLimit = -1 }})
	adminID := nodetest.AddUser(b, cl.Node(0), "admin", true)
	var total time.Duration
	victim := 0
	for b.Loop() {
		admin := connect(b, cl, victim, adminID, false)
		ctx := context.Background()
		if _, err := admin.ListMyRooms(ctx); err != nil {
			b.Fatal(err)
		}
		killedAt := time.Now()
		cl.Kill(victim)
		for {
			reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := admin.AddUser(reqCtx, nodetest.NewIdentity(b).PublicKey(), "after-kill", false)
			cancel()
			if err == nil {
				break
			}
			if time.Since(killedAt) > 30*time.Second {
				b.Fatalf("no write succeeded within 30s of the kill: %v", err)
			}
		}
		total += time.Since(killedAt)
		_ = admin.Close()
		cl.Restart(victim)
		victim = (victim + 1) % cl.Size()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "recover-ms")
}
