package kvstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// logCases are the store suite's cases of the room log (see TestStore).
var logCases = []storeCase{
	{"AppendChain", testAppendChain},
	{"AppendInvalid", testAppendInvalid},
	{"AppendConcurrent", testAppendConcurrent},
	{"AppendDuplicate", testAppendDuplicate},
	{"ReadLogForward", testReadLogForward},
	{"ReadLogBackward", testReadLogBackward},
	{"ReadLogSince", testReadLogSince},
	{"ReadLogBytes", testReadLogBytes},
	{"ReadLogInvalid", testReadLogInvalid},
	{"ReadLogEmpty", testReadLogEmpty},
	{"FromSeq", testFromSeq},
}

// appendFrames appends n frames to room, each with the ID and bytes
// prefix-<i>, and returns what each append returned.
func appendFrames(t *testing.T, st *kvstore.Store, room, prefix string, n int) []kvstore.LogAppend {
	t.Helper()
	out := make([]kvstore.LogAppend, 0, n)
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		a, err := st.AppendFrame(context.Background(), room, id, []byte(id), 0)
		if err != nil {
			t.Fatalf("append %s to room %s: %v", id, room, err)
		}
		if a.Duplicate {
			t.Fatalf("append %s: a duplicate", id)
		}
		out = append(out, a)
	}
	return out
}

// readAll reads every frame of room that a member with fromSeq sees,
// page after page (of limit frames), checking that each page's FirstSeq
// and the order hold.
func readAll(t *testing.T, st *kvstore.Store, room string, fromSeq uint64, limit int) []subjects.StoredFrame {
	t.Helper()
	var out []subjects.StoredFrame
	req := subjects.HistoryRequest{RoomID: room, Limit: limit}
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatalf("room %s: more than 10000 pages", room)
		}
		page, err := st.ReadLog(context.Background(), room, fromSeq, req)
		if err != nil {
			t.Fatalf("read the log of room %s from %d: %v", room, req.From, err)
		}
		if page.FirstSeq != fromSeq+1 {
			t.Fatalf("FirstSeq = %d, want %d", page.FirstSeq, fromSeq+1)
		}
		if limit > 0 && len(page.Frames) > limit {
			t.Fatalf("a page of %d frames, limit %d", len(page.Frames), limit)
		}
		out = append(out, page.Frames...)
		if page.Next == 0 {
			break
		}
		if page.Next <= req.From {
			t.Fatalf("Next %d does not move on from %d", page.Next, req.From)
		}
		req.From = page.Next
	}
	checkAscending(t, out)
	return out
}

// checkAscending checks frames are in ascending sequence, each above the
// member's FromSeq.
func checkAscending(t *testing.T, frames []subjects.StoredFrame) {
	t.Helper()
	for i := 1; i < len(frames); i++ {
		if frames[i].Seq <= frames[i-1].Seq {
			t.Fatalf("frame %d has seq %d after %d", i, frames[i].Seq, frames[i-1].Seq)
		}
	}
}

// checkChain checks that frames are a chain: each one's Prev is the
// frame before it, and the first one's is first.
func checkChain(t *testing.T, frames []subjects.StoredFrame, first uint64) {
	t.Helper()
	prev := first
	for i, f := range frames {
		if f.Prev != prev {
			t.Fatalf("frame %d (seq %d) has prev %d, want %d", i, f.Seq, f.Prev, prev)
		}
		prev = f.Seq
	}
}

// seqsOf returns the sequences of frames.
func seqsOf(frames []subjects.StoredFrame) []uint64 {
	out := make([]uint64, len(frames))
	for i, f := range frames {
		out[i] = f.Seq
	}
	return out
}

// appendSeqs returns the sequences of appends.
func appendSeqs(as []kvstore.LogAppend) []uint64 {
	out := make([]uint64, len(as))
	for i, a := range as {
		out[i] = a.Seq
	}
	return out
}

// testAppendChain: appends to two rooms, interleaved, each form their
// own chain (Prev is the room's previous frame, 0 for the first), as
// AppendFrame returns it and as the log stores it; LogPosition is the
// last sequence stream-wide.
func testAppendChain(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig()).Store
	a, b := anyRoomID(), anyRoomID()
	var got = map[string][]kvstore.LogAppend{}
	for i := range 10 {
		for _, room := range []string{a, b} {
			got[room] = append(got[room], appendFrames(t, st, room, fmt.Sprintf("%s-%d", room, i), 1)...)
		}
	}
	for _, room := range []string{a, b} {
		prev := uint64(0)
		for i, ap := range got[room] {
			if ap.Prev != prev || ap.Seq <= prev {
				t.Fatalf("room %s append %d = %+v, want prev %d and a later seq", room, i, ap, prev)
			}
			prev = ap.Seq
		}
		frames := readAll(t, st, room, 0, 0)
		if !slices.Equal(seqsOf(frames), appendSeqs(got[room])) {
			t.Fatalf("room %s stored %v, appended %v", room, seqsOf(frames), appendSeqs(got[room]))
		}
		checkChain(t, frames, 0)
		for i, f := range frames {
			if want := fmt.Sprintf("%s-%d-0", room, i); string(f.Frame) != want || f.Time.IsZero() {
				t.Fatalf("frame %d = %q at %s, want %q with its time", i, f.Frame, f.Time, want)
			}
		}
	}
	pos, err := st.LogPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last := got[b][9].Seq; pos != last {
		t.Fatalf("LogPosition = %d, want the last append's %d", pos, last)
	}
}

// testAppendInvalid: bad arguments store nothing.
func testAppendInvalid(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig()).Store
	room := anyRoomID()
	for _, tc := range []struct {
		name, room, id string
		maxAge         time.Duration
	}{
		{"empty id", room, "", 0},
		{"id with a space", room, "a b", 0},
		{"id with a newline", room, "a\r\nNats-Msg-Id: b", 0},
		{"id too long", room, string(bytes.Repeat([]byte{'x'}, 129)), 0},
		{"bad room", "a.*", "id", 0},
		{"negative age", room, "id", -time.Second},
		{"age below a second", room, "id", 500 * time.Millisecond},
	} {
		if _, err := st.AppendFrame(ctx, tc.room, tc.id, []byte("x"), tc.maxAge); !errors.Is(err, kvstore.ErrInvalid) {
			t.Errorf("%s: AppendFrame = %v, want ErrInvalid", tc.name, err)
		}
	}
	if page, err := st.ReadLog(ctx, room, 0, subjects.HistoryRequest{}); err != nil || len(page.Frames) != 0 || page.LastSeq != 0 {
		t.Fatalf("after refused appends the log holds %+v, %v", page, err)
	}
}

// testAppendConcurrent: goroutines of two stores (through two servers at
// R3) append to one room at once; the room's log is one chain that holds
// every frame once, and what each append returned is what was stored.
func testAppendConcurrent(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	stores := []*kvstore.Store{e.open(t, kvstore.DefaultConfig()).Store, e.openElsewhere(t, kvstore.DefaultConfig()).Store}
	room := anyRoomID()
	const goroutines, perGoroutine = 4, 25
	var (
		mu       sync.Mutex
		appended = map[uint64]kvstore.LogAppend{}
		wg       sync.WaitGroup
	)
	for si, st := range stores {
		for g := range goroutines {
			wg.Go(func() {
				for i := range perGoroutine {
					id := fmt.Sprintf("s%d-g%d-%d", si, g, i)
					a, err := st.AppendFrame(ctx, room, id, []byte(id), 0)
					if err != nil {
						t.Errorf("append %s: %v", id, err)
						return
					}
					mu.Lock()
					if _, dup := appended[a.Seq]; dup || a.Duplicate {
						t.Errorf("append %s: seq %d given twice (%+v)", id, a.Seq, a)
					}
					appended[a.Seq] = a
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	frames := readAll(t, stores[1], room, 0, 37)
	const total = 2 * goroutines * perGoroutine
	if len(frames) != total {
		t.Fatalf("%d frames stored, want %d", len(frames), total)
	}
	checkChain(t, frames, 0)
	seen := map[string]bool{}
	for _, f := range frames {
		a, ok := appended[f.Seq]
		if !ok || a.Prev != f.Prev {
			t.Fatalf("stored frame %d (prev %d) was appended as %+v (%v)", f.Seq, f.Prev, a, ok)
		}
		if seen[string(f.Frame)] {
			t.Fatalf("frame %q stored twice", f.Frame)
		}
		seen[string(f.Frame)] = true
	}
}

// testAppendDuplicate: a frame appended again with its ID, through the
// same store or another one (which does not know the room), is stored
// once: the retry gets the first copy's sequence, Duplicate, and the
// chain goes on from the frame stored.
func testAppendDuplicate(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig()).Store
	other := e.openElsewhere(t, kvstore.DefaultConfig()).Store
	room := anyRoomID()
	first := appendFrames(t, st, room, "x", 1)[0]
	for name, s := range map[string]*kvstore.Store{"same store": st, "another store": other} {
		again, err := s.AppendFrame(ctx, room, "x-0", []byte("x-0 again"), 0)
		if err != nil || !again.Duplicate || again.Seq != first.Seq {
			t.Fatalf("%s: append again = %+v, %v, want a duplicate of %d", name, again, err, first.Seq)
		}
	}
	next, err := other.AppendFrame(ctx, room, "y", []byte("y"), 0)
	if err != nil || next.Prev != first.Seq || next.Duplicate {
		t.Fatalf("append after the duplicates = %+v, %v, want prev %d", next, err, first.Seq)
	}
	frames := readAll(t, st, room, 0, 0)
	if len(frames) != 2 || string(frames[0].Frame) != "x-0" || string(frames[1].Frame) != "y" {
		t.Fatalf("stored %v, want x-0 and y once each", frames)
	}
	checkChain(t, frames, 0)
	// The same ID in another room is another frame.
	elsewhere, err := st.AppendFrame(ctx, anyRoomID(), "x-0", []byte("x-0 elsewhere"), 0)
	if err != nil || elsewhere.Duplicate || elsewhere.Seq <= next.Seq {
		t.Fatalf("the same ID in another room = %+v, %v, want a frame of its own", elsewhere, err)
	}
}

// interleaved appends n frames to room with a frame of another room
// after each, so that the room's sequences are not consecutive, and
// returns the room's.
func interleaved(t *testing.T, st *kvstore.Store, room string, n int) []uint64 {
	t.Helper()
	other := anyRoomID()
	seqs := make([]uint64, 0, n)
	for i := range n {
		seqs = append(seqs, appendFrames(t, st, room, fmt.Sprintf("f%d-%s", i, other), 1)[0].Seq)
		appendFrames(t, st, other, fmt.Sprintf("o%d", i), 1)
	}
	return seqs
}

// page reads one page and fails the test on an error.
func page(t *testing.T, st *kvstore.Store, room string, fromSeq uint64, req subjects.HistoryRequest) subjects.HistoryResponse {
	t.Helper()
	req.RoomID = room
	p, err := st.ReadLog(context.Background(), room, fromSeq, req)
	if err != nil {
		t.Fatalf("ReadLog(from seq %d, %+v): %v", fromSeq, req, err)
	}
	checkAscending(t, p.Frames)
	return p
}

// testReadLogForward: forward pages by From, Until and Limit, with Next
// where a page stopped at its limit, LastSeq the room's last frame, and
// only the frames after the member's FromSeq.
func testReadLogForward(t *testing.T, e *storeEnv) {
	st := e.open(t, kvstore.DefaultConfig()).Store
	room := anyRoomID()
	seqs := interleaved(t, st, room, 30)
	last := seqs[29]
	for _, tc := range []struct {
		name     string
		fromSeq  uint64
		req      subjects.HistoryRequest
		want     []uint64
		nextFrom uint64 // the Next wanted is in (the last frame, nextFrom]; 0: none
	}{
		{name: "everything", want: seqs},
		{name: "a first page", req: subjects.HistoryRequest{Limit: 10}, want: seqs[:10], nextFrom: seqs[10]},
		{name: "a middle page", req: subjects.HistoryRequest{From: seqs[10], Limit: 10}, want: seqs[10:20], nextFrom: seqs[20]},
		{name: "the last page", req: subjects.HistoryRequest{From: seqs[20], Limit: 10}, want: seqs[20:]},
		{name: "from between frames", req: subjects.HistoryRequest{From: seqs[4] + 1, Limit: 2}, want: seqs[5:7], nextFrom: seqs[7]},
		{name: "a gap", req: subjects.HistoryRequest{From: seqs[5], Until: seqs[8]}, want: seqs[5:9]},
		{name: "a gap up to another room's frame", req: subjects.HistoryRequest{From: seqs[5], Until: seqs[8] + 1}, want: seqs[5:9]},
		{name: "a gap larger than the limit", req: subjects.HistoryRequest{From: seqs[5], Until: seqs[20], Limit: 3}, want: seqs[5:8], nextFrom: seqs[8]},
		{name: "until only", req: subjects.HistoryRequest{Until: seqs[2]}, want: seqs[:3]},
		{name: "one frame", req: subjects.HistoryRequest{From: seqs[7], Until: seqs[7]}, want: seqs[7:8]},
		{name: "after the end", req: subjects.HistoryRequest{From: last + 1}},
		{name: "the largest page", req: subjects.HistoryRequest{Limit: subjects.MaxHistoryLimit}, want: seqs},
		{name: "a later member", fromSeq: seqs[19], want: seqs[20:]},
		{name: "a later member asking for earlier", fromSeq: seqs[19], req: subjects.HistoryRequest{From: seqs[0], Limit: 5}, want: seqs[20:25], nextFrom: seqs[25]},
		{name: "a later member asking for a gap it may not see", fromSeq: seqs[19], req: subjects.HistoryRequest{From: seqs[2], Until: seqs[10]}},
		{name: "a member from after the end", fromSeq: last},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := page(t, st, room, tc.fromSeq, tc.req)
			if got := seqsOf(p.Frames); !slices.Equal(got, tc.want) {
				t.Fatalf("frames %v, want %v", got, tc.want)
			}
			if p.LastSeq != last || p.FirstSeq != tc.fromSeq+1 {
				t.Fatalf("LastSeq %d FirstSeq %d, want %d and %d", p.LastSeq, p.FirstSeq, last, tc.fromSeq+1)
			}
			switch {
			case tc.nextFrom == 0 && p.Next != 0:
				t.Fatalf("Next = %d, want none", p.Next)
			case tc.nextFrom != 0 && (p.Next <= p.Frames[len(p.Frames)-1].Seq || p.Next > tc.nextFrom):
				t.Fatalf("Next = %d, want after %d up to %d", p.Next, p.Frames[len(p.Frames)-1].Seq, tc.nextFrom)
			}
			// Frames carry their chain: each one's Prev is the room's
			// frame before it.
			for _, f := range p.Frames {
				i := slices.Index(seqs, f.Seq)
				if want := uint64(0); i > 0 && f.Prev != seqs[i-1] || i == 0 && f.Prev != want {
					t.Fatalf("frame %d has prev %d", f.Seq, f.Prev)
				}
			}
		})
	}
	// The default limit.
	more := interleaved(t, st, room, subjects.DefaultHistoryLimit+1)
	all := append(slices.Clone(seqs), more...)
	p := page(t, st, room, 0, subjects.HistoryRequest{})
	if got := seqsOf(p.Frames); !slices.Equal(got, all[:subjects.DefaultHistoryLimit]) || p.Next == 0 {
		t.Fatalf("a page without a limit: %d frames, next %d, want %d and a Next", len(got), p.Next, subjects.DefaultHistoryLimit)
	}
	if got := seqsOf(readAll(t, st, room, 0, 0)); !slices.Equal(got, all) {
		t.Fatalf("paging through everything: %d frames, want %d", len(got), len(all))
	}
}

// testReadLogBackward: the last frames before Before (or the newest),
// walking the chain back, in ascending order, never below the member's
// FromSeq.
func testReadLogBackward(t *testing.T, e *storeEnv) {
	st := e.open(t, kvstore.DefaultConfig()).Store
	room := anyRoomID()
	seqs := interleaved(t, st, room, 30)
	for _, tc := range []struct {
		name    string
		fromSeq uint64
		req     subjects.HistoryRequest
		want    []uint64
	}{
		{name: "the newest", req: subjects.HistoryRequest{Last: 5}, want: seqs[25:]},
		{name: "before a frame", req: subjects.HistoryRequest{Last: 5, Before: seqs[10]}, want: seqs[5:10]},
		{name: "before another room's frame", req: subjects.HistoryRequest{Last: 5, Before: seqs[10] + 1}, want: seqs[6:11]},
		{name: "near the start", req: subjects.HistoryRequest{Last: 5, Before: seqs[3]}, want: seqs[:3]},
		{name: "before the start", req: subjects.HistoryRequest{Last: 5, Before: seqs[0]}},
		{name: "before 1", req: subjects.HistoryRequest{Last: 5, Before: 1}},
		{name: "after the end", req: subjects.HistoryRequest{Last: 2, Before: seqs[29] + 100}, want: seqs[28:]},
		{name: "more than there is", req: subjects.HistoryRequest{Last: 100, Limit: 100}, want: seqs},
		{name: "at most the limit", req: subjects.HistoryRequest{Last: 3, Limit: 2}, want: seqs[28:]},
		{name: "at most the default limit", req: subjects.HistoryRequest{Last: subjects.DefaultHistoryLimit + 1}, want: seqs},
		{name: "a later member", fromSeq: seqs[19], req: subjects.HistoryRequest{Last: 20}, want: seqs[20:]},
		{name: "a later member before what it sees", fromSeq: seqs[19], req: subjects.HistoryRequest{Last: 5, Before: seqs[15]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := page(t, st, room, tc.fromSeq, tc.req)
			if got := seqsOf(p.Frames); !slices.Equal(got, tc.want) {
				t.Fatalf("frames %v, want %v", got, tc.want)
			}
			if p.Next != 0 || p.LastSeq != seqs[29] {
				t.Fatalf("Next %d LastSeq %d, want 0 and %d", p.Next, p.LastSeq, seqs[29])
			}
		})
	}
}

// testReadLogSince: a forward page from the first frame stored at or
// after Since, From winning over it, never below the member's FromSeq.
func testReadLogSince(t *testing.T, e *storeEnv) {
	st := e.open(t, kvstore.DefaultConfig()).Store
	room := anyRoomID()
	seqs := interleaved(t, st, room, 20)
	frames := readAll(t, st, room, 0, 0)
	at := frames[12].Time
	for _, tc := range []struct {
		name    string
		fromSeq uint64
		req     subjects.HistoryRequest
		want    []uint64
	}{
		{name: "since a frame", req: subjects.HistoryRequest{Since: at}, want: seqs[12:]},
		{name: "since just after it", req: subjects.HistoryRequest{Since: at.Add(time.Nanosecond)}, want: seqs[13:]},
		{name: "since with a limit", req: subjects.HistoryRequest{Since: at, Limit: 3}, want: seqs[12:15]},
		{name: "since and until", req: subjects.HistoryRequest{Since: at, Until: seqs[14]}, want: seqs[12:15]},
		{name: "from wins", req: subjects.HistoryRequest{From: seqs[18], Since: at}, want: seqs[18:]},
		{name: "since long ago", req: subjects.HistoryRequest{Since: at.Add(-time.Hour)}, want: seqs},
		{name: "since after the end", req: subjects.HistoryRequest{Since: frames[19].Time.Add(time.Millisecond)}},
		{name: "a later member", fromSeq: seqs[15], req: subjects.HistoryRequest{Since: at}, want: seqs[16:]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := seqsOf(page(t, st, room, tc.fromSeq, tc.req).Frames); !slices.Equal(got, tc.want) {
				t.Fatalf("frames %v, want %v", got, tc.want)
			}
		})
	}
}

// testReadLogBytes: a page stops before the frame that would take it
// past subjects.MaxHistoryPageBytes, and holds at least one frame, even
// one larger than that.
func testReadLogBytes(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig()).Store
	room := anyRoomID()
	const frameSize = 200 << 10 // two fit in a page, three do not
	var seqs []uint64
	for i := range 5 {
		frame := bytes.Repeat([]byte{byte('a' + i)}, frameSize)
		a, err := st.AppendFrame(ctx, room, fmt.Sprintf("big-%d", i), frame, 0)
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, a.Seq)
	}
	huge, err := st.AppendFrame(ctx, room, "huge", bytes.Repeat([]byte{'h'}, subjects.MaxHistoryPageBytes+1), 0)
	if err != nil {
		t.Fatal(err)
	}
	seqs = append(seqs, huge.Seq)
	var pages [][]uint64
	req := subjects.HistoryRequest{}
	for {
		p := page(t, st, room, 0, req)
		size := 0
		for _, f := range p.Frames {
			size += len(f.Frame)
		}
		if len(p.Frames) == 0 || (len(p.Frames) > 1 && size > subjects.MaxHistoryPageBytes) {
			t.Fatalf("a page of %d frames, %d bytes", len(p.Frames), size)
		}
		pages = append(pages, seqsOf(p.Frames))
		if p.Next == 0 {
			break
		}
		req.From = p.Next
	}
	want := [][]uint64{seqs[0:2], seqs[2:4], seqs[4:5], seqs[5:6]}
	if !slices.EqualFunc(pages, want, slices.Equal) {
		t.Fatalf("pages %v, want %v", pages, want)
	}
	back := page(t, st, room, 0, subjects.HistoryRequest{Last: 5})
	if got := seqsOf(back.Frames); !slices.Equal(got, seqs[5:]) {
		t.Fatalf("backward from a huge frame: %v, want %v", got, seqs[5:])
	}
	back = page(t, st, room, 0, subjects.HistoryRequest{Last: 5, Before: huge.Seq})
	if got := seqsOf(back.Frames); !slices.Equal(got, seqs[3:5]) {
		t.Fatalf("backward before it: %v, want %v", got, seqs[3:5])
	}
}

// testReadLogInvalid: requests that make no sense read nothing and are
// ErrInvalidQuery (which is ErrInvalid).
func testReadLogInvalid(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig()).Store
	room := anyRoomID()
	appendFrames(t, st, room, "f", 3)
	for _, tc := range []struct {
		name string
		req  subjects.HistoryRequest
	}{
		{"negative limit", subjects.HistoryRequest{Limit: -1}},
		{"limit too large", subjects.HistoryRequest{Limit: subjects.MaxHistoryLimit + 1}},
		{"negative last", subjects.HistoryRequest{Last: -1}},
		{"last with from", subjects.HistoryRequest{Last: 2, From: 1}},
		{"last with since", subjects.HistoryRequest{Last: 2, Since: time.Now()}},
		{"last with until", subjects.HistoryRequest{Last: 2, Until: 5}},
		{"before without last", subjects.HistoryRequest{Before: 5}},
		{"until below from", subjects.HistoryRequest{From: 5, Until: 4}},
		{"another room", subjects.HistoryRequest{RoomID: anyRoomID()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.req.RoomID == "" {
				tc.req.RoomID = room
			}
			p, err := st.ReadLog(ctx, room, 0, tc.req)
			if !errors.Is(err, kvstore.ErrInvalidQuery) || !errors.Is(err, kvstore.ErrInvalid) {
				t.Fatalf("ReadLog = %v, want ErrInvalidQuery", err)
			}
			if len(p.Frames) != 0 {
				t.Fatalf("an invalid request read %d frames", len(p.Frames))
			}
		})
	}
	if _, err := st.ReadLog(ctx, "a.>", 0, subjects.HistoryRequest{}); !errors.Is(err, kvstore.ErrInvalid) {
		t.Fatalf("ReadLog of a bad room = %v, want ErrInvalid", err)
	}
}

// testReadLogEmpty: a room without frames reads as empty, in both
// directions, with LastSeq 0.
func testReadLogEmpty(t *testing.T, e *storeEnv) {
	st := e.open(t, kvstore.DefaultConfig()).Store
	appendFrames(t, st, anyRoomID(), "elsewhere", 2)
	room := anyRoomID()
	for _, req := range []subjects.HistoryRequest{{}, {Last: 5}, {From: 1, Until: 10}, {Since: time.Now().Add(-time.Hour)}} {
		p := page(t, st, room, 7, req)
		if len(p.Frames) != 0 || p.LastSeq != 0 || p.Next != 0 || p.FirstSeq != 8 {
			t.Fatalf("ReadLog(%+v) of an empty room = %+v", req, p)
		}
	}
}

// testFromSeq: a room's owner sees the frames stored from the room's
// creation on, an invitee those from its invitation on (copied into its
// member record when it accepts), a member added directly those from
// then on.
func testFromSeq(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	ss := e.open(t, kvstore.DefaultConfig())
	st := ss.Store
	owner, bob, carol := natstest.NewUserKey(t), natstest.NewUserKey(t), natstest.NewUserKey(t)
	// Frames of other rooms move the log on.
	appendFrames(t, st, anyRoomID(), "before", 3)
	before, err := st.LogPosition(ctx)
	if err != nil || before == 0 {
		t.Fatalf("LogPosition = %d, %v", before, err)
	}
	room, err := ss.CreateRoom(ctx, kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeE2E, History: subjects.HistoryKeep, HistoryMaxAge: time.Hour, Owner: owner}, sealedKey("k1-owner"))
	if err != nil {
		t.Fatal(err)
	}
	if room.HistoryMaxAge != time.Hour || room.History != subjects.HistoryKeep {
		t.Fatalf("room %+v lost its history policy", room)
	}
	om, err := ss.GetMember(ctx, room.ID, owner)
	if err != nil || om.FromSeq != before {
		t.Fatalf("owner's member record %+v, %v, want FromSeq %d", om, err, before)
	}
	early := appendFrames(t, st, room.ID, "early", 3)
	inv, err := ss.Invite(ctx, room.ID, bob, room.Epoch, sealedKey("k1-bob"))
	if err != nil || inv.FromSeq != early[2].Seq {
		t.Fatalf("Invite = %+v, %v, want FromSeq %d", inv, err, early[2].Seq)
	}
	late := appendFrames(t, st, room.ID, "late", 2)
	m, err := ss.AcceptInvitation(ctx, room.ID, bob)
	if err != nil || m.FromSeq != inv.FromSeq {
		t.Fatalf("AcceptInvitation = %+v, %v, want FromSeq %d", m, err, inv.FromSeq)
	}
	if stored, err := ss.GetMember(ctx, room.ID, bob); err != nil || stored.FromSeq != inv.FromSeq {
		t.Fatalf("bob's member record %+v, %v", stored, err)
	}
	added, err := ss.AddMember(ctx, room.ID, carol, subjects.RoleMember, room.Epoch, sealedKey("k1-carol"))
	if err != nil || added.FromSeq != late[1].Seq {
		t.Fatalf("AddMember = %+v, %v, want FromSeq %d", added, err, late[1].Seq)
	}
	if got := seqsOf(readAll(t, st, room.ID, om.FromSeq, 0)); !slices.Equal(got, append(appendSeqs(early), appendSeqs(late)...)) {
		t.Fatalf("the owner sees %v", got)
	}
	if got := seqsOf(readAll(t, st, room.ID, m.FromSeq, 0)); !slices.Equal(got, appendSeqs(late)) {
		t.Fatalf("the invitee sees %v, want the frames after its invitation %v", got, appendSeqs(late))
	}
	if got := readAll(t, st, room.ID, added.FromSeq, 0); len(got) != 0 {
		t.Fatalf("a member added last sees %v", seqsOf(got))
	}
}
