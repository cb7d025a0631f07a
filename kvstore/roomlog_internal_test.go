package kvstore

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/embedded"
)

// TestChainCacheBounded: the cache of rooms' last sequences forgets idle
// rooms beyond its size, never one in use.
func TestChainCacheBounded(t *testing.T) {
	c := newChainCache(8)
	held := c.acquire("held")
	held.last, held.known = 42, true
	for i := range 100 {
		ch := c.acquire(fmt.Sprintf("room-%d", i))
		ch.last, ch.known = uint64(i), true
		c.release(ch)
		if n := c.size(); n > 8 {
			t.Fatalf("%d rooms remembered, want at most 8", n)
		}
	}
	if c.rooms["held"] != held {
		t.Fatal("a room in use was forgotten")
	}
	c.release(held)
	again := c.acquire("held")
	defer c.release(again)
	if !again.known || again.last != 42 {
		t.Fatalf("the held room's chain = %+v", again)
	}
}

// testServer starts an embedded server (natstest imports this package)
// and returns a JetStream context on it.
func testServer(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestViewProbeDetectsStall: a watch that stays behind its bucket from
// one probe to the next has stalled: the probe says so (and the view
// reloads), while a watch that keeps up passes.
func TestViewProbeDetectsStall(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, testServer(t), Config{Replicas: 1, Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	v := &MembershipView{store: st, nc: st.js.Conn()}
	gen, _, err := v.load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.stop()
	if err := v.probe(ctx, gen); err != nil {
		t.Fatalf("a current view's probe: %v", err)
	}
	// A change the watch does not apply (nothing follows it here).
	if _, err := st.rooms.Put(ctx, "r", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := v.probe(ctx, gen); err != nil {
		t.Fatalf("the first probe behind: %v", err)
	}
	err = v.probe(ctx, gen)
	if err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("the second probe behind = %v, want stalled", err)
	}
	// Caught up (as follow would): passes again.
	gen.watches[0].maxRev, gen.watches[0].lagAt = gen.watches[0].maxRev+1, 0
	if err := v.probe(ctx, gen); err != nil {
		t.Fatalf("caught up: %v", err)
	}
}
