package e2e

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func TestReplayWindow(t *testing.T) {
	type step struct {
		seq    uint64
		replay bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"in order", []step{{1, false}, {2, false}, {3, false}}},
		{"duplicate", []step{{5, false}, {5, true}}},
		{"duplicate after more", []step{{5, false}, {6, false}, {7, false}, {5, true}, {6, true}}},
		{"late but within the window", []step{{100, false}, {99, false}, {98, false}, {99, true}}},
		{"reordered around a word boundary", []step{{130, false}, {127, false}, {128, false}, {129, false}, {127, true}, {131, false}}},
		{"oldest in the window", []step{{2000, false}, {2000 - ReplayWindowSize + 1, false}, {2000 - ReplayWindowSize + 1, true}}},
		{"just below the window", []step{{2000, false}, {2000 - ReplayWindowSize, true}}},
		{"far behind", []step{{2000, false}, {1, true}}},
		{"window slides", []step{{100, false}, {100 + ReplayWindowSize, false}, {100, true}, {101, false}, {101, true}}},
		{"seen and still inside after a slide", []step{{100, false}, {150, false}, {1100, false}, {150, true}, {149, false}}},
		{"big jump clears the bitmap", []step{{64, false}, {1 << 40, false}, {1<<40 - 64, false}, {1<<40 - 64, true}, {64, true}}},
		{"jump of exactly one bitmap", []step{{10, false}, {10 + 64*windowWords, false}, {10 + 64*windowWords - 1, false}, {10 + 64*windowWords, true}}},
		{"near the top of uint64", []step{{1<<64 - 2, false}, {1<<64 - 1, false}, {1<<64 - 2, true}, {1<<64 - 3, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewReplayWindow(0)
			for i, s := range tt.steps {
				err := w.Check(testRoom, 1, "U1", s.seq)
				if s.replay && !errors.Is(err, ErrReplay) {
					t.Fatalf("step %d: Check(%d) = %v, want ErrReplay", i, s.seq, err)
				}
				if !s.replay && err != nil {
					t.Fatalf("step %d: Check(%d) = %v, want nil", i, s.seq, err)
				}
			}
		})
	}
}

// TestReplayWindowModel compares the bitmap with a plain set over random
// sequences that move forward with jitter, as reordered frames do.
func TestReplayWindowModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	w := NewReplayWindow(0)
	seen := make(map[uint64]bool)
	var top uint64
	var accepted, replays int
	base := uint64(10_000)
	for i := range 200_000 {
		if rng.IntN(100) == 0 {
			base += uint64(rng.IntN(5000)) // a burst or a restart
		}
		base++
		seq := base + uint64(rng.IntN(1300)) - 1200 // jitter around the window's edge
		if rng.IntN(10) == 0 && top > 0 {
			seq = top - uint64(rng.IntN(1100)) // a replay of something recent
		}
		wantReplay := seen[seq] || (top >= ReplayWindowSize && seq <= top-ReplayWindowSize)
		err := w.Check(testRoom, 1, "U1", seq)
		if gotReplay := errors.Is(err, ErrReplay); gotReplay != wantReplay {
			t.Fatalf("step %d: Check(%d) with top %d = %v, want replay %v", i, seq, top, err, wantReplay)
		}
		if err == nil {
			seen[seq] = true
			top = max(top, seq)
			accepted++
		} else {
			replays++
		}
	}
	// Both outcomes must be common, or the comparison proves little.
	if accepted < 50_000 || replays < 20_000 {
		t.Fatalf("%d accepted, %d replays: the random walk is lopsided", accepted, replays)
	}
}

func TestReplayWindowKeys(t *testing.T) {
	w := NewReplayWindow(0)
	if err := w.Check("r1", 1, "U1", 7); err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		room   string
		epoch  uint64
		sender string
	}{{"r2", 1, "U1"}, {"r1", 2, "U1"}, {"r1", 1, "U2"}} {
		if err := w.Check(k.room, k.epoch, k.sender, 7); err != nil {
			t.Errorf("Check(%v, 7) = %v: windows are not separate", k, err)
		}
	}
	if err := w.Check("r1", 1, "U1", 7); !errors.Is(err, ErrReplay) {
		t.Errorf("Check of the first again = %v, want ErrReplay", err)
	}
	if w.Len() != 4 {
		t.Errorf("Len = %d, want 4", w.Len())
	}
}

func TestReplayWindowBounded(t *testing.T) {
	w := NewReplayWindow(2)
	mustCheck := func(sender string, seq uint64) {
		t.Helper()
		if err := w.Check(testRoom, 1, sender, seq); err != nil {
			t.Fatalf("Check(%s, %d): %v", sender, seq, err)
		}
	}
	mustCheck("U1", 1)
	mustCheck("U2", 1)
	mustCheck("U1", 2) // U1 is now the most recently used
	mustCheck("U3", 1) // evicts U2
	if w.Len() != 2 {
		t.Fatalf("Len = %d, want 2", w.Len())
	}
	if err := w.Check(testRoom, 1, "U1", 2); !errors.Is(err, ErrReplay) {
		t.Errorf("U1 was evicted: Check = %v, want ErrReplay", err)
	}
	// U2's window is gone: the documented cost of the bound.
	if err := w.Check(testRoom, 1, "U2", 1); err != nil {
		t.Errorf("evicted U2 starts afresh: Check = %v, want nil", err)
	}
	for i := range uint64(10_000) {
		_ = w.Check(testRoom, i, "U9", 1)
	}
	if w.Len() != 2 {
		t.Errorf("Len after many epochs = %d, want 2", w.Len())
	}
}

func TestReplayWindowConcurrent(t *testing.T) {
	w := NewReplayWindow(0)
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for seq := range uint64(200) {
				if w.Check(testRoom, 1, "U1", seq+1) == nil {
					accepted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := accepted.Load(); got != 200 {
		t.Fatalf("%d checks accepted, want each of 200 numbers exactly once", got)
	}
}

func TestReplayWindowZeroValue(t *testing.T) {
	var w ReplayWindow
	if err := w.Check(testRoom, 1, "U1", 1); err != nil {
		t.Fatalf("Check on the zero value: %v", err)
	}
	if err := w.Check(testRoom, 1, "U1", 1); !errors.Is(err, ErrReplay) {
		t.Fatalf("Check again = %v, want ErrReplay", err)
	}
}
