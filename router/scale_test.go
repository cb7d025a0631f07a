package router_test

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestManyMembersAtOnce: 500 users added to a room at once can all send
// and receive within a second of their addition, and no one is
// disconnected: membership no longer lives in permissions, so adding
// members kicks no one and the router follows it by itself.
func TestManyMembersAtOnce(t *testing.T) {
	const n = 500
	e := newEnv(t, noRateLimits)
	alice := e.user("alice")
	r := e.room(alice, subjects.ModeCleartext, "")

	members := make([]*member, n)
	received := make([]chan *nats.Msg, n)
	parallel(t, n, func(i int) {
		id := nodetest.AddUser(t, e.node, fmt.Sprintf("m%03d", i), false)
		m := &member{Peer: nodetest.Connect(t, e.node, id), t: t, name: id.PublicKey()[:8], sealers: map[string]*e2e.Sealer{}}
		deliver, err := subjects.Deliver(m.Pub(), r.RoomID)
		if err != nil {
			t.Error(err)
			return
		}
		// One delivery is enough: the owner's frame. Afterwards the
		// server drops what comes, so that 500 members' frames to 500
		// members are not all read back.
		received[i] = make(chan *nats.Msg, 1)
		sub, err := m.Conn.ChanSubscribe(deliver, received[i])
		if err == nil {
			err = sub.AutoUnsubscribe(1)
		}
		if err == nil {
			err = m.Conn.Flush()
		}
		if err != nil {
			t.Error(err)
		}
		members[i] = m
	})
	if t.Failed() {
		t.FailNow()
	}

	parallel(t, n, func(i int) {
		e.invite(r, members[i])
		members[i].Call(subjects.RoomsAccept, subjects.RoomRequest{RoomID: r.RoomID}, nil)
	})
	added := time.Now()
	// The router's view follows the store a little behind it; the window
	// of a second starts before it has them all.
	parallel(t, n, func(i int) { e.visible(r, members[i]) })
	t.Logf("%d members added (invited and accepted), all in the router's view %s later", n, time.Since(added).Round(time.Millisecond))

	_, wire, _ := alice.mustSend(r, "welcome")
	parallel(t, n, func(i int) {
		select {
		case m := <-received[i]:
			if !bytes.Equal(m.Data, wire) {
				t.Errorf("%s received %q, want the owner's frame", members[i].name, m.Data)
			}
		case <-time.After(timeout):
			t.Errorf("%s received nothing", members[i].name)
		}
	})
	receivedAll := time.Since(added)
	if receivedAll > raceSlowdown*time.Second {
		t.Errorf("500 new members took %s to receive the owner's frame, want within a second (times %d)", receivedAll, raceSlowdown)
	}
	// Each may send at once: none is refused. (The sends themselves,
	// 500 frames to 500 members, are 250,000 deliveries: their total time
	// is the router's throughput, logged, not the membership's delay.)
	var slowest time.Duration
	var mu sync.Mutex
	parallel(t, n, func(i int) {
		_, wire := members[i].frame(r, "here")
		start := time.Now()
		if _, err := members[i].send(r.RoomID, wire); err != nil {
			t.Errorf("%s: first send after joining: %v", members[i].name, err)
		}
		mu.Lock()
		slowest = max(slowest, time.Since(start))
		mu.Unlock()
	})
	t.Logf("all received the owner's frame %s after the addition; all sent too (%s in all, the slowest ack %s)",
		receivedAll.Round(time.Millisecond), time.Since(added).Round(time.Millisecond), slowest.Round(time.Millisecond))
	downs := 0
	for _, m := range append(members, alice) {
		downs += m.Disconnects()
	}
	if downs != 0 {
		t.Errorf("%d disconnections: adding members must kick no one", downs)
	}
	if got := e.logMessages(r.RoomID); got != n+1 {
		t.Errorf("%d frames stored, want %d", got, n+1)
	}
}

// parallel runs f(0) … f(n-1) on a bounded number of goroutines and
// waits. The work is queued up front, so that a worker that ends early
// (a failed check) blocks no one.
func parallel(t testing.TB, n int, f func(i int)) {
	t.Helper()
	const workers = 64
	work := make(chan int, n)
	for i := range n {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range work {
				f(i)
			}
		})
	}
	wg.Wait()
}
