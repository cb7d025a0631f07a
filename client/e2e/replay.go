package e2e

import (
	"container/list"
	"fmt"
	"sync"
)

const (
	// ReplayWindowSize is how far below the highest sequence number seen
	// a frame can arrive and still be accepted once: seq > highest-1024.
	ReplayWindowSize = 1024

	// DefaultMaxTracked is the default number of (room, epoch, sender)
	// windows a ReplayWindow keeps.
	DefaultMaxTracked = 4096

	// windowWords is the size of a window's bitmap in 64-bit words: one
	// more than the window, as in RFC 6479, so that advancing never clears
	// bits still inside the window.
	windowWords = ReplayWindowSize/64 + 1
)

// ReplayWindow detects replayed frames: per room, epoch and sender, it keeps
// the highest sequence number seen and a bitmap of the ReplayWindowSize
// numbers below it (the sliding window of IPsec, RFC 6479). Its memory is
// bounded: it tracks at most maxTracked windows and forgets the least
// recently used one first. A forgotten sender's next frame starts a new
// window, so size the bound above the number of senders active across the
// rooms and epochs a peer follows. The zero value tracks DefaultMaxTracked
// windows. It is safe for concurrent use.
type ReplayWindow struct {
	mu      sync.Mutex
	max     int
	windows map[windowKey]*list.Element // of *window
	lru     list.List                   // front: most recently used
}

type windowKey struct {
	room   string
	epoch  uint64
	sender string
}

type window struct {
	key    windowKey
	top    uint64 // highest sequence number seen
	bitmap [windowWords]uint64
}

// NewReplayWindow returns a replay window that tracks at most maxTracked
// (room, epoch, sender) windows; 0 or less means DefaultMaxTracked.
func NewReplayWindow(maxTracked int) *ReplayWindow {
	if maxTracked <= 0 {
		maxTracked = DefaultMaxTracked
	}
	return &ReplayWindow{max: maxTracked, windows: make(map[windowKey]*list.Element)}
}

// Check records seq from sender in room at epoch and fails with [ErrReplay]
// if it was recorded before or is ReplayWindowSize or more below the highest
// number recorded for them. It records nothing when it fails.
func (w *ReplayWindow) Check(room string, epoch uint64, sender string, seq uint64) error {
	return w.check(windowKey{room, epoch, sender}, seq, true)
}

// Len returns the number of windows tracked.
func (w *ReplayWindow) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.windows)
}

// check tests seq against k's window and, if commit, records it.
func (w *ReplayWindow) check(k windowKey, seq uint64, commit bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.windows == nil { // the zero value
		w.windows = make(map[windowKey]*list.Element)
	}
	if w.max <= 0 {
		w.max = DefaultMaxTracked
	}
	e, ok := w.windows[k]
	if !ok {
		if commit {
			w.add(k, seq)
		}
		return nil
	}
	win := e.Value.(*window)
	if err := win.test(seq); err != nil {
		return fmt.Errorf("%w: seq %d from %s in room %s epoch %d", err, seq, k.sender, k.room, k.epoch)
	}
	if commit {
		win.record(seq)
		w.lru.MoveToFront(e)
	}
	return nil
}

// add starts a window for k at seq, evicting the least recently used window
// if full.
func (w *ReplayWindow) add(k windowKey, seq uint64) {
	if len(w.windows) >= w.max {
		oldest := w.lru.Back()
		delete(w.windows, oldest.Value.(*window).key)
		w.lru.Remove(oldest)
	}
	win := &window{key: k, top: seq}
	win.set(seq)
	w.windows[k] = w.lru.PushFront(win)
}

// test returns ErrReplay if seq was seen or is too old.
func (win *window) test(seq uint64) error {
	if seq > win.top {
		return nil
	}
	if win.top-seq >= ReplayWindowSize {
		return ErrReplay
	}
	if win.bitmap[(seq/64)%windowWords]&(1<<(seq%64)) != 0 {
		return ErrReplay
	}
	return nil
}

// record marks seq, which test accepted, advancing the window if needed.
func (win *window) record(seq uint64) {
	if seq > win.top {
		cur, next := win.top/64, seq/64
		// Clear the words between the old top and the new one; past a
		// whole bitmap, clearing all of it is enough.
		for i := range min(next-cur, windowWords) {
			win.bitmap[(cur+1+i)%windowWords] = 0
		}
		win.top = seq
	}
	win.set(seq)
}

func (win *window) set(seq uint64) {
	win.bitmap[(seq/64)%windowWords] |= 1 << (seq % 64)
}
