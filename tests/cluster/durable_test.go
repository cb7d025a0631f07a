package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestAcknowledgedFramesSurviveNodeLoss streams acknowledged frames into
// an encrypted room while first the publisher's node and then the
// subscriber's node are killed: every frame whose send was acknowledged
// reaches the subscriber, exactly once and in room-log order. Sends that
// fail during the failovers are the publisher's to retry; they are not
// counted as acknowledged.
func TestAcknowledgedFramesSurviveNodeLoss(t *testing.T) {
	cl, _ := setup(t)
	const pubNode, subNode = 0, 2
	alice := connect(t, cl, pubNode, nodetest.AddUser(t, cl.Node(0), "alice", false), true)
	bobID := nodetest.AddUser(t, cl.Node(0), "bob", false)
	bob := connect(t, cl, subNode, bobID, true)
	if a, b := connectedNode(cl, alice), connectedNode(cl, bob); a != pubNode || b != subNode {
		t.Fatalf("alice on n%d, bob on n%d; want n%d and n%d", a+1, b+1, pubNode+1, subNode+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	room, err := alice.CreateRoom(ctx, "durable", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bobID.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Accept(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}

	var (
		mu       sync.Mutex
		got      = map[string]int{} // message ID → deliveries
		lastSeq  uint64
		disorder []string
	)
	delivered := make(chan struct{}, 1)
	sub, err := bob.Subscribe(ctx, room.RoomID, func(m client.Message) {
		mu.Lock()
		got[m.ID]++
		if m.Seq <= lastSeq {
			disorder = append(disorder, fmt.Sprintf("seq %d after %d", m.Seq, lastSeq))
		}
		lastSeq = m.Seq
		mu.Unlock()
		select {
		case delivered <- struct{}{}:
		default:
		}
	}, func(err error) { t.Logf("bob rejected a frame: %v", err) }, client.FromSeq(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	// The publisher: one acknowledged send after another until stop.
	var (
		ackMu    sync.Mutex
		acked    []client.Sent
		failures int
	)
	ackedCount := func() int { ackMu.Lock(); defer ackMu.Unlock(); return len(acked) }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			s, err := alice.Publish(sctx, room.RoomID, fmt.Appendf(nil, "frame %d", i))
			scancel()
			ackMu.Lock()
			if err != nil {
				failures++
			} else {
				acked = append(acked, s)
			}
			ackMu.Unlock()
			if err != nil {
				time.Sleep(50 * time.Millisecond) // pace retries during a failover
			}
		}
	})
	waitAcks := func(n int, what string) {
		t.Helper()
		eventually(t, 60*time.Second, what, func() error {
			if c := ackedCount(); c < n {
				ackMu.Lock()
				defer ackMu.Unlock()
				return fmt.Errorf("%d of %d acknowledged (%d failed)", c, n, failures)
			}
			return nil
		})
	}

	waitAcks(50, "acknowledged sends before the first kill")
	cl.Kill(pubNode)
	waitAcks(ackedCount()+50, "acknowledged sends after the publisher's node was killed")
	cl.Restart(pubNode)
	waitReplicasCurrent(t, cl, 1)
	waitAcks(ackedCount()+50, "acknowledged sends after the publisher's node came back")
	cl.Kill(subNode)
	waitAcks(ackedCount()+50, "acknowledged sends after the subscriber's node was killed")
	close(stop)
	wg.Wait()

	ackMu.Lock()
	all := append([]client.Sent(nil), acked...)
	ackMu.Unlock()
	missing := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, s := range all {
			if got[s.ID] == 0 {
				out = append(out, fmt.Sprintf("%s (seq %d)", s.ID, s.Seq))
			}
		}
		return out
	}
	eventually(t, 90*time.Second, "every acknowledged frame delivered to bob", func() error {
		if m := missing(); len(m) > 0 {
			return fmt.Errorf("%d of %d acknowledged frames not delivered: %s", len(m), len(all), head(m, 5))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for id, n := range got {
		if n != 1 {
			t.Errorf("frame %s delivered %d times", id, n)
		}
	}
	if len(disorder) > 0 {
		t.Errorf("out of order: %s", head(disorder, 5))
	}
	for _, s := range all {
		if s.Seq == 0 {
			t.Errorf("acknowledged frame %s has no sequence", s.ID)
		}
	}
	t.Logf("%d frames acknowledged, %d sends failed during the failovers; bob on n%d received all of them once, in order",
		len(all), failures, connectedNode(cl, bob)+1)
}
