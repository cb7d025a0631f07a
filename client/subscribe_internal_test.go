package client

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestSlowConsumerCatchesUp: when nats.go drops deliveries of a
// subscription whose handler is slow (a slow consumer) and nothing else
// follows them, the subscription reads them back from the log: every
// frame is delivered, in order, once.
func TestSlowConsumerCatchesUp(t *testing.T) {
	ctx := context.Background()
	bus := nodetest.NewBus(t, func(c *node.Config) { c.Router.SendRate = -1 })
	id := nodetest.AddUser(t, bus.Node, "alice", false)
	c, err := Connect(ctx, bus.Node.ClientURL(), id, WithCA(bus.CA))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetEncryptionKey(ctx, filepath.Join(t.TempDir(), "alice.enc")); err != nil {
		t.Fatal(err)
	}
	room, err := c.CreateRoom(ctx, "r", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}

	gate := make(chan struct{})
	var mu sync.Mutex
	var got []Message
	sub, err := c.Subscribe(ctx, room.RoomID, func(m Message) {
		<-gate
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}, func(err error) { t.Errorf("rejected: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	// Beyond the pipeline and the sequencer's buffer, nats.go may hold
	// only a few deliveries.
	if err := sub.sub.SetPendingLimits(8, -1); err != nil {
		t.Fatal(err)
	}
	n := pipelineDepth + deliveryBuffer + 200
	var last Sent
	for i := range n {
		if last, err = c.Publish(ctx, room.RoomID, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		dropped, err := sub.sub.Dropped()
		if err != nil {
			t.Fatal(err)
		}
		if dropped > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nats.go dropped nothing: no slow consumer")
		}
		time.Sleep(10 * time.Millisecond) // polling nats.go's counter
	}
	close(gate)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d delivered", k, n)
		}
		time.Sleep(10 * time.Millisecond) // polling the handler's record
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("%d delivered, want %d", len(got), n)
	}
	for i, m := range got {
		if string(m.Data) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d is %q", i, m.Data)
		}
	}
	if sub.Position() != last.Seq {
		t.Fatalf("position %d, want %d", sub.Position(), last.Seq)
	}
}

func TestDeliveryHeaders(t *testing.T) {
	tests := []struct {
		name      string
		seq, prev string
		wantSeq   uint64
		wantPrev  uint64
		wantErr   bool
	}{
		{"stored", "7", "5", 7, 5, false},
		{"first", "1", "0", 1, 0, false},
		{"not stored", "0", "0", 0, 0, false},
		{"no headers", "", "", 0, 0, false},
		{"not stored, no prev", "0", "", 0, 0, false},
		{"seq not a number", "x", "1", 0, 0, true},
		{"negative", "-1", "0", 0, 0, true},
		{"prev missing", "7", "", 0, 0, true},
		{"prev not below seq", "7", "7", 0, 0, true},
		{"prev above seq", "7", "9", 0, 0, true},
		{"overflow", "18446744073709551616", "1", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := nats.NewMsg("x")
			if tt.seq != "" {
				m.Header.Set(subjects.HeaderSeq, tt.seq)
			}
			if tt.prev != "" {
				m.Header.Set(subjects.HeaderPrev, tt.prev)
			}
			seq, prev, err := deliveryHeaders(m)
			if (err != nil) != tt.wantErr || seq != tt.wantSeq || prev != tt.wantPrev {
				t.Fatalf("deliveryHeaders = %d, %d, %v; want %d, %d, error %v", seq, prev, err, tt.wantSeq, tt.wantPrev, tt.wantErr)
			}
		})
	}
}

func TestAscending(t *testing.T) {
	frames := func(seqs ...uint64) []subjects.StoredFrame {
		out := make([]subjects.StoredFrame, len(seqs))
		for i, s := range seqs {
			out[i].Seq = s
		}
		return out
	}
	seqs := func(fs []subjects.StoredFrame) []uint64 {
		out := []uint64{}
		for _, f := range fs {
			out = append(out, f.Seq)
		}
		return out
	}
	tests := []struct {
		name         string
		in           []subjects.StoredFrame
		after, until uint64
		want         []uint64
	}{
		{"all", frames(1, 2, 5), 0, 0, []uint64{1, 2, 5}},
		{"after", frames(1, 2, 5), 1, 0, []uint64{2, 5}},
		{"until", frames(1, 2, 5), 0, 4, []uint64{1, 2}},
		{"out of order dropped", frames(1, 5, 3, 6), 0, 0, []uint64{1, 5, 6}},
		{"duplicates dropped", frames(2, 2, 3), 0, 0, []uint64{2, 3}},
		{"none", frames(1, 2), 2, 0, []uint64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := seqs(ascending(tt.in, tt.after, tt.until))
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("ascending = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestIDSetBounded(t *testing.T) {
	s := newIDSet(3)
	for _, id := range []string{"a", "b", "c"} {
		if !s.add(id) {
			t.Fatalf("%s not new", id)
		}
	}
	if s.add("a") || !s.has("a") {
		t.Fatal("a forgotten too early")
	}
	s.add("d") // forgets a, the oldest
	if s.has("a") || !s.has("b") || !s.has("d") || len(s.ids) != 3 {
		t.Fatalf("after d: %v", s.ids)
	}
}
