package client

import (
	"context"
	"fmt"
	"time"

	"github.com/unibus/unibus/subjects"
)

// HistoryQuery asks for one page of a room's log (see
// subjects.HistoryRequest): forward from From (0: the first frame the
// caller may see) or Since, up to Until when set; or, with Last, the last
// Last frames before Before (or the newest). Limit bounds the page (0: the
// service's default, subjects.DefaultHistoryLimit; at most
// subjects.MaxHistoryLimit).
type HistoryQuery struct {
	From   uint64
	Since  time.Time
	Until  uint64
	Last   int
	Before uint64
	Limit  int
}

// HistoryPage is one page of a room's log, opened.
type HistoryPage struct {
	// Messages are the frames that verified and opened, in ascending
	// sequence (Message.Seq).
	Messages []Message
	// Rejected are the frames that did not, each error naming the frame's
	// sequence.
	Rejected []error
	// Next, for a forward page that stopped at its limit, is the From of
	// the next page; 0 when the page reached Until or the end of the log.
	// Scroll back with Before set to the first message's Seq.
	Next uint64
	// LastSeq is the sequence of the room's newest frame when the page was
	// read; FirstSeq the first sequence the caller may see (it was invited
	// then).
	LastSeq, FirstSeq uint64
}

// History reads one page of a room's log (RoomsHistory): only a current
// member may, and it sees only the frames stored since it was invited
// (ErrForbidden otherwise). Every frame is verified and opened like a
// subscription's, as stored frames are (see Subscribe: no maximum age,
// earlier epochs accepted when the owner granted their keys); a page never
// yields the same frame twice.
func (c *Conn) History(ctx context.Context, roomID string, q HistoryQuery) (HistoryPage, error) {
	if err := subjects.ValidateRoomID(roomID); err != nil {
		return HistoryPage{}, fmt.Errorf("history: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	if _, err := c.keys.room(ctx, roomID, false); err != nil {
		return HistoryPage{}, fmt.Errorf("history of room %s: %w", roomID, err)
	}
	r, err := c.history(ctx, subjects.HistoryRequest{
		RoomID: roomID, From: q.From, Since: q.Since, Until: q.Until, Last: q.Last, Before: q.Before, Limit: q.Limit,
	})
	if err != nil {
		return HistoryPage{}, fmt.Errorf("history of room %s: %w", roomID, err)
	}
	page := HistoryPage{Next: r.Next, LastSeq: r.LastSeq, FirstSeq: r.FirstSeq}
	seen := newIDSet(max(len(r.Frames), 1))
	p := newPipeline(c.newOpener(roomID, true), func(rc received) {
		switch {
		case rc.id != "" && seen.has(rc.id):
		case rc.err != nil:
			page.Rejected = append(page.Rejected, rc.err)
		default:
			seen.add(rc.id)
			page.Messages = append(page.Messages, rc.m)
		}
	})
	frames := r.Frames
	until := q.Until
	if q.Last > 0 && q.Before > 0 {
		// Only frames below Before: none at all below 1.
		if until = q.Before - 1; until == 0 {
			frames = nil
		}
	}
	for _, f := range ascending(frames, 0, until) {
		if !p.submit(ctx, f.Seq, f.Frame) {
			break
		}
	}
	p.close()
	p.wait()
	if err := ctx.Err(); err != nil {
		return HistoryPage{}, fmt.Errorf("history of room %s: %w", roomID, err)
	}
	return page, nil
}
