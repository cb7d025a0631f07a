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

// BenchmarkFanOut measures what delivering through the router costs per
// message against the core fan-out rooms used before it (one publish to a
// room subject, which the server copies to every subscriber), in the same
// run on one node: a room of 50 members, each counting what it receives,
// and b.N frames sent fire-and-forget, through the router (checked,
// stored in the room log, one delivery per member, each on the member's
// own subject) and, as the floor, published raw to one subject that the
// same 50 connections subscribe to. Each is timed until every member has
// received every frame. Metrics: ns per frame delivered to all 50, and
// the ratio.
func BenchmarkFanOut(b *testing.B) {
	const members = 50
	e := newEnv(b, noRateLimits, func(c *node.Config) { c.Router.ShardQueue = 1 << 16 })
	alice := e.user("alice")
	r := e.room(alice, subjects.ModeCleartext, "")
	var routed, raw atomic.Int64
	// A plain core subject that the router's own connection may both
	// publish and subscribe to (an inbox), as a room's subject was.
	rawSubject := "_INBOX.benchfanout." + r.RoomID
	ms := make([]*member, members)
	for i := range ms {
		ms[i] = e.user(fmt.Sprintf("m%02d", i))
	}
	for _, m := range ms {
		e.join(r, m)
	}
	for _, m := range append(ms, alice) {
		deliver, err := subjects.Deliver(m.Pub(), r.RoomID)
		if err != nil {
			b.Fatal(err)
		}
		for subject, n := range map[string]*atomic.Int64{deliver: &routed} {
			sub, err := m.Conn.Subscribe(subject, func(*nats.Msg) { n.Add(1) })
			if err != nil {
				b.Fatal(err)
			}
			if err := sub.SetPendingLimits(-1, -1); err != nil {
				b.Fatal(err)
			}
		}
		if err := m.Conn.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	// The floor's subscribers: a node connection stands for the members
	// (peers may subscribe only their own subjects), one subscription per
	// member, as the server kept one per member.
	floor := e.node.RouterConn
	for range members + 1 {
		sub, err := floor.Subscribe(rawSubject, func(*nats.Msg) { raw.Add(1) })
		if err != nil {
			b.Fatal(err)
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			b.Fatal(err)
		}
	}
	if err := floor.Flush(); err != nil {
		b.Fatal(err)
	}
	frames := make([][]byte, b.N)
	for i := range b.N {
		_, frames[i] = alice.frame(r, "fan out")
	}
	sendSubject := alice.sendSubject(r.RoomID)
	want := int64(b.N * (members + 1))
	wait := func(n *atomic.Int64, what string) {
		deadline := time.Now().Add(time.Minute)
		for n.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("%s: %d of %d deliveries", what, n.Load(), want)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.ResetTimer()

	start := time.Now()
	for i := range b.N {
		if err := alice.Conn.Publish(sendSubject, frames[i]); err != nil {
			b.Fatal(err)
		}
	}
	wait(&routed, "routed")
	routerNs := float64(time.Since(start).Nanoseconds()) / float64(b.N)

	start = time.Now()
	for i := range b.N {
		if err := floor.Publish(rawSubject, frames[i]); err != nil {
			b.Fatal(err)
		}
	}
	wait(&raw, "raw")
	rawNs := float64(time.Since(start).Nanoseconds()) / float64(b.N)
	b.StopTimer()

	b.ReportMetric(routerNs, "routed-ns/frame")
	b.ReportMetric(rawNs, "core-fanout-ns/frame")
	b.ReportMetric(routerNs/rawNs, "routed/core")
}
