package router_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
)

// BenchmarkAckedSend measures, in one run on one node, an acknowledged
// send through the router (checked, stored in the room log, delivered,
// acked) beside a raw JetStream acknowledged publish of the same size to
// the same stream (the room log, under a room of its own), and beside fire-and-forget sends through
// the router (timed until the router has handled them all). It reports
// each one's time and the ratios: what the router costs over JetStream
// alone, and what waiting for each ack costs over pipelining.
func BenchmarkAckedSend(b *testing.B) {
	for _, size := range []int{256, 16 << 10} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) { benchmarkAckedSend(b, size) })
	}
}

func benchmarkAckedSend(b *testing.B, size int) {
	// A queue as long as can be: fire-and-forget sends come faster than
	// one room's shard stores them, and none may be refused as busy.
	e := newEnv(b, noRateLimits, func(c *node.Config) { c.Router.ShardQueue = 1 << 16 })
	alice := e.user("alice")
	r := e.room(alice, subjects.ModeCleartext, "")
	// alice, the room's one member, counts her deliveries: the end of the
	// fire-and-forget run is her last one.
	var delivered atomic.Int64
	fnfDone := make(chan struct{})
	deliver, err := subjects.Deliver(alice.Pub(), r.RoomID)
	if err != nil {
		b.Fatal(err)
	}
	sub, err := alice.Conn.Subscribe(deliver, func(*nats.Msg) {
		if delivered.Add(1) == int64(2*b.N) {
			close(fnfDone)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	js, err := jetstream.New(e.node.StoreConn)
	if err != nil {
		b.Fatal(err)
	}
	// The raw publishes go to the room log itself, under a room of their
	// own: the same stream, storage and replicas, without the router.
	rawSubject, err := subjects.Room("benchraw")
	if err != nil {
		b.Fatal(err)
	}
	payload := string(make([]byte, size))
	acked, fnf := make([][]byte, b.N), make([][]byte, b.N)
	for i := range b.N {
		_, acked[i] = alice.frame(r, payload)
		_, fnf[i] = alice.frame(r, payload)
	}
	sendSubject := alice.sendSubject(r.RoomID)
	b.SetBytes(int64(len(acked[0])))
	b.ResetTimer()

	start := time.Now()
	for i := range b.N {
		if _, err := alice.send(r.RoomID, acked[i]); err != nil {
			b.Fatal(err)
		}
	}
	routerNs := float64(time.Since(start).Nanoseconds()) / float64(b.N)

	start = time.Now()
	for i := range b.N {
		if _, err := js.Publish(ctx, rawSubject, acked[i], jetstream.WithMsgID(fmt.Sprint(i))); err != nil {
			b.Fatal(err)
		}
	}
	jsNs := float64(time.Since(start).Nanoseconds()) / float64(b.N)

	start = time.Now()
	for i := range b.N {
		if err := alice.Conn.Publish(sendSubject, fnf[i]); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-fnfDone:
	case <-ctx.Done():
		b.Fatalf("%d of %d deliveries (stats %+v)", delivered.Load(), 2*b.N, e.stats())
	}
	fnfNs := float64(time.Since(start).Nanoseconds()) / float64(b.N)
	b.StopTimer()

	b.ReportMetric(routerNs, "acked-ns/send")
	b.ReportMetric(jsNs, "js-ns/publish")
	b.ReportMetric(fnfNs, "fnf-ns/send")
	b.ReportMetric(routerNs/jsNs, "acked/js")
	b.ReportMetric(routerNs/fnfNs, "acked/fnf")
}
