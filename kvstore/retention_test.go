package kvstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// TestRetentionByCount: the room log keeps the last
// HistoryMaxMsgsPerRoom frames of each room; reading starts at the oldest
// kept, whose Prev names a frame that is gone, and a backward walk stops
// there.
func TestRetentionByCount(t *testing.T) {
	st, _ := openStore(t, kvstore.Config{Replicas: 1, Memory: true, HistoryMaxMsgsPerRoom: 5})
	busy, quiet := anyRoomID(), anyRoomID()
	appended := appendFrames(t, st, busy, "busy", 8)
	appendFrames(t, st, quiet, "quiet", 2)
	frames := readAll(t, st, busy, 0, 0)
	if got, want := seqsOf(frames), appendSeqs(appended[3:]); !slices.Equal(got, want) {
		t.Fatalf("kept %v, want the last five %v", got, want)
	}
	checkChain(t, frames, appended[2].Seq)
	back := page(t, st, busy, 0, subjects.HistoryRequest{Last: 10, Limit: 10})
	if got, want := seqsOf(back.Frames), appendSeqs(appended[3:]); !slices.Equal(got, want) {
		t.Fatalf("backward: %v, want %v", got, want)
	}
	if got := readAll(t, st, quiet, 0, 0); len(got) != 2 {
		t.Fatalf("the quiet room kept %d frames, want 2", len(got))
	}
}

// TestRetentionByRoomAge: a room's own maximum age removes its frames
// after it, and only its own; the room's next frame starts the chain
// again (Prev 0).
func TestRetentionByRoomAge(t *testing.T) {
	ctx := context.Background()
	st, _ := openStore(t, kvstore.Config{Replicas: 1, Memory: true})
	short, long := anyRoomID(), anyRoomID()
	for i := range 3 {
		id := fmt.Sprintf("short-%d", i)
		if _, err := st.AppendFrame(ctx, short, id, []byte(id), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	appendFrames(t, st, long, "long", 2)
	if got := readAll(t, st, short, 0, 0); len(got) != 3 {
		t.Fatalf("right after the appends: %d frames, want 3", len(got))
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(readAll(t, st, short, 0, 0)) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("frames of a room with a maximum age of a second still there after 20 s")
		}
		time.Sleep(100 * time.Millisecond) // poll interval; the deadline bounds the wait
	}
	if got := readAll(t, st, long, 0, 0); len(got) != 2 {
		t.Fatalf("the other room kept %d frames, want 2", len(got))
	}
	// The store still remembers the removed last frame: the append
	// learns better and starts the chain again.
	a, err := st.AppendFrame(ctx, short, "after", []byte("after"), time.Second)
	if err != nil || a.Prev != 0 {
		t.Fatalf("append after expiry = %+v, %v, want prev 0", a, err)
	}
	// A deployment's age is the most a room keeps: a longer one of the
	// room's own is the deployment's.
	if _, err := st.AppendFrame(ctx, long, "longer", []byte("x"), 365*24*time.Hour); err != nil {
		t.Fatal(err)
	}
}

// TestHistoryConfigValidation: the room log's settings are checked when
// the store opens.
func TestHistoryConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  kvstore.Config
	}{
		{"max age below a minute", kvstore.Config{Replicas: 1, HistoryMaxAge: 59 * time.Second}},
		{"negative max age", kvstore.Config{Replicas: 1, HistoryMaxAge: -time.Hour}},
		{"max messages below -1", kvstore.Config{Replicas: 1, HistoryMaxMsgsPerRoom: -2}},
		{"max bytes below the minimum", kvstore.Config{Replicas: 1, HistoryMaxBytes: kvstore.MinHistoryBytes - 1}},
		{"negative max bytes", kvstore.Config{Replicas: 1, HistoryMaxBytes: -2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Validation comes before any request: no server needed.
			if _, err := kvstore.Open(context.Background(), nil, tc.cfg); !errors.Is(err, kvstore.ErrConfigValidation) {
				t.Fatalf("Open = %v, want ErrConfigValidation", err)
			}
		})
	}
	st, js := openStore(t, kvstore.Config{Replicas: 1, Memory: true, HistoryMaxAge: 48 * time.Hour, HistoryMaxMsgsPerRoom: -1})
	if st.HistoryMaxAge() != 48*time.Hour {
		t.Fatalf("HistoryMaxAge = %s", st.HistoryMaxAge())
	}
	stream, err := js.Stream(context.Background(), kvstore.StreamRoomLog)
	if err != nil {
		t.Fatal(err)
	}
	c := stream.CachedInfo().Config
	if c.MaxAge != 48*time.Hour || c.MaxMsgsPerSubject != -1 || !c.AllowDirect || !c.AllowMsgTTL || c.Duplicates != kvstore.HistoryDuplicateWindow || c.Subjects[0] != subjects.RoomLogAll {
		t.Fatalf("room log config %+v", c)
	}
	events, err := js.Stream(context.Background(), kvstore.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if c := events.CachedInfo().Config; c.MaxAge != kvstore.InvitationTTL || c.MaxMsgsPerSubject != kvstore.EventsMaxPerUser || !c.AllowDirect || c.Subjects[0] != subjects.EventsAll {
		t.Fatalf("events config %+v", c)
	}
	if st, _ := openStore(t, kvstore.Config{Replicas: 1, Memory: true}); st.HistoryMaxAge() != kvstore.DefaultHistoryMaxAge {
		t.Fatalf("default HistoryMaxAge = %s", st.HistoryMaxAge())
	}
}
