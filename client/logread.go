package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/unibus/unibus/subjects"
)

// Reading a room's log (RoomsHistory) for a subscription: its start, the
// frames it missed, a catch-up after a reconnect.

// ascending returns the frames of a page with sequences strictly
// ascending, above after and, when until is set, at most until: what a
// page may hold, whatever the server sent.
func ascending(frames []subjects.StoredFrame, after, until uint64) []subjects.StoredFrame {
	out := frames[:0:0]
	for _, f := range frames {
		if f.Seq <= after || (until != 0 && f.Seq > until) {
			continue
		}
		out = append(out, f)
		after = f.Seq
	}
	return out
}

// history asks for one page of a room's log.
func (c *Conn) history(ctx context.Context, req subjects.HistoryRequest) (subjects.HistoryResponse, error) {
	var r subjects.HistoryResponse
	err := c.call(ctx, subjects.RoomsHistory, req, &r)
	return r, err
}

// readBack reads up to n more frames before frames (for Last), as far as
// the log lets it; what it cannot read is reported and skipped.
func (s *Subscription) readBack(frames []subjects.StoredFrame, n int) []subjects.StoredFrame {
	for n > 0 && len(frames) > 0 && s.ctx.Err() == nil {
		k := min(n, subjects.MaxHistoryLimit)
		ctx, cancel := context.WithTimeout(s.ctx, DefaultRequestTimeout)
		r, err := s.c.history(ctx, subjects.HistoryRequest{RoomID: s.room, Last: k, Limit: k, Before: frames[0].Seq})
		cancel()
		if err != nil {
			s.reject(fmt.Errorf("%w: frames before %d: %w", ErrGap, frames[0].Seq, err))
			return frames
		}
		page := ascending(r.Frames, 0, frames[0].Seq-1)
		if len(page) == 0 {
			return frames
		}
		frames = append(page, frames...)
		n -= len(page)
		if page[0].Seq <= r.FirstSeq {
			return frames
		}
	}
	return frames
}

// catchUp reads the log from the frame after the last one handed on to
// until (0: to the end), handing each frame to the pipeline, and retries
// failed reads while they make progress or for catchUpPatience. Frames it
// could not read are reported (ErrGap) and skipped. It reports false when
// the subscription ends.
func (s *Subscription) catchUp(until uint64) bool {
	pause := 100 * time.Millisecond
	lastProgress := time.Now()
	for {
		from := s.last + 1
		if until != 0 && from > until {
			return true
		}
		err := s.readForward(subjects.HistoryRequest{RoomID: s.room, From: from, Until: until, Limit: subjects.MaxHistoryLimit})
		if s.ctx.Err() != nil {
			return false
		}
		if err == nil {
			return true
		}
		if s.last >= from {
			lastProgress, pause = time.Now(), 100*time.Millisecond
		}
		if permanent(err) || time.Since(lastProgress) > catchUpPatience {
			end := "the end of the log"
			if until != 0 {
				end = strconv.FormatUint(until, 10)
			}
			return s.reject(fmt.Errorf("%w: frames %d to %s: %w", ErrGap, s.last+1, end, err))
		}
		if !sleepCtx(s.ctx, pause) {
			return false
		}
		pause = min(2*pause, catchUpRetryMax)
	}
}

// permanent reports a read of the log that fails the same way when
// retried: the caller is no longer a member, the room is gone.
func permanent(err error) bool {
	return errors.Is(err, ErrForbidden) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrBadRequest) || errors.Is(err, ErrUnauthenticated)
}

// readAhead is how many parts of the log a catch-up reads at once: a page
// takes a round trip through the services, and one page after another
// would leave the pipeline waiting.
const readAhead = 4

// readForward reads the log forward from req.From to req.Until (0: the
// end), handing each frame to the pipeline. A first page tells how far a
// page reaches; the rest up to the room's last frame (or Until) is cut
// into parts of that span, readAhead of them read at once and handed on in
// order; then, without Until, what was stored meanwhile is read to the
// end.
func (s *Subscription) readForward(req subjects.HistoryRequest) error {
	first, err := s.c.history(s.ctx, req)
	if err != nil {
		return err
	}
	if !s.submitPage(first.Frames, req.Until) {
		return s.ctx.Err()
	}
	if !continues(first, req) {
		return nil
	}
	end := req.Until
	if end == 0 {
		end = first.LastSeq
	}
	if first.Next <= end {
		if err := s.readParts(first.Next, end, max(first.Next-req.From, 1)); err != nil {
			return err
		}
	}
	if req.Until != 0 {
		return nil
	}
	return s.readPages(subjects.HistoryRequest{RoomID: s.room, From: max(s.last, end) + 1, Limit: subjects.MaxHistoryLimit})
}

// continues reports whether a forward page that answered req has a next
// page within req.
func continues(r subjects.HistoryResponse, req subjects.HistoryRequest) bool {
	return r.Next != 0 && r.Next > req.From && (req.Until == 0 || r.Next <= req.Until)
}

// submitPage hands the frames of a page to the pipeline, those that
// follow the last one and are at most until (when set).
func (s *Subscription) submitPage(frames []subjects.StoredFrame, until uint64) bool {
	for _, f := range ascending(frames, s.last, until) {
		if !s.submit(f.Seq, f.Frame) {
			return false
		}
	}
	return true
}

// page is one page of the log, or why it could not be read.
type page struct {
	r   subjects.HistoryResponse
	err error
}

// readPages reads the log forward from req, page after page, handing each
// frame to the pipeline; the next page is requested while the current
// one's frames are handed on.
func (s *Subscription) readPages(req subjects.HistoryRequest) error {
	ctx, cancel := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	fetch := func(req subjects.HistoryRequest) <-chan page {
		ch := make(chan page, 1)
		wg.Go(func() {
			r, err := s.c.history(ctx, req)
			ch <- page{r, err}
		})
		return ch
	}
	next := fetch(req)
	for {
		var p page
		select {
		case p = <-next:
		case <-ctx.Done():
			return ctx.Err()
		}
		if p.err != nil {
			return p.err
		}
		more := continues(p.r, req)
		if more {
			req.From = p.r.Next
			next = fetch(req)
		}
		if !s.submitPage(p.r.Frames, req.Until) {
			return s.ctx.Err()
		}
		if !more {
			return nil
		}
	}
}

// readParts reads the log from from to end in parts of span sequences,
// readAhead parts at once, and hands their frames to the pipeline in
// order. Each part is read page after page, holding at most one page
// ahead of the pipeline, so that the memory a catch-up holds is bounded
// by readAhead pages whatever the log holds.
func (s *Subscription) readParts(from, end, span uint64) error {
	ctx, cancel := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	// The parts being read, in order; the channel's capacity bounds them.
	parts := make(chan chan page, readAhead-1)
	wg.Go(func() {
		defer close(parts)
		for lo := from; lo <= end; {
			hi := min(end, lo+span-1)
			if hi < lo { // overflow
				hi = end
			}
			ch, partLo, partHi := make(chan page, 1), lo, hi
			wg.Go(func() { s.readPart(ctx, partLo, partHi, ch) })
			select {
			case parts <- ch:
			case <-ctx.Done():
				return
			}
			if hi == end {
				return
			}
			lo = hi + 1
		}
	})
	for ch := range parts {
		for p := range ch {
			if p.err != nil {
				return p.err
			}
			if !s.submitPage(p.r.Frames, p.r.Next) {
				return s.ctx.Err()
			}
		}
	}
	return ctx.Err()
}

// readPart reads the frames from lo to hi, page after page, into ch, which
// it closes.
func (s *Subscription) readPart(ctx context.Context, lo, hi uint64, ch chan<- page) {
	defer close(ch)
	req := subjects.HistoryRequest{RoomID: s.room, From: lo, Until: hi, Limit: subjects.MaxHistoryLimit}
	for {
		r, err := s.c.history(ctx, req)
		more := err == nil && continues(r, req)
		// Hand on the page with its bound: its Next, or hi.
		bound := hi
		if more {
			bound = r.Next - 1
		}
		r.Next = bound
		select {
		case ch <- page{r, err}:
		case <-ctx.Done():
			return
		}
		if !more {
			return
		}
		req.From = r.Next + 1
	}
}
