package kvstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/unibus/unibus/subjects"
)

// Reading the room log. A member sees the frames stored after it was
// invited (Member.FromSeq), while it is a member: the service checks the
// membership, ReadLog the sequences. Forward pages are what one batch
// direct get answers, read through an ephemeral consumer (see
// consumerBatch) on any replica; a subject's last sequence comes from the
// stream's leader, and a forward page that should reach it but does not
// (a replica a few milliseconds behind the leader) is read again, so that
// a member filling a gap up to a frame it was just delivered gets it.

const (
	// laggingReplicaAttempts bounds the reads of a forward page from a
	// replica that is behind the leader, and laggingReplicaWait is the
	// first wait between them (doubled each time).
	laggingReplicaAttempts = 6
	laggingReplicaWait     = 5 * time.Millisecond
)

// errLogReplicaBehind means the replicas that answered direct gets kept
// missing frames the stream's leader has: retry later.
var errLogReplicaBehind = errors.New("the replica that answered is behind the stream's leader")

// ReadLog returns a page of the room's log as req asks (see
// subjects.HistoryRequest), of the frames a member whose FromSeq is
// fromSeq may see: those with a sequence above fromSeq. FirstSeq is
// fromSeq+1, LastSeq the room's last stored frame (0: none), Next, in a
// forward page that stopped at its limit (Limit frames or
// subjects.MaxHistoryPageBytes of frames, a page always holding at least
// one frame when one is due), the From of the next page.
//
// Forward (Last 0): from From (at least FirstSeq; 0 means FirstSeq), or
// from the first frame stored at or after Since when From is 0, up to
// Until when set. Backward (Last > 0): the last min(Last, Limit) frames
// before Before (or the newest), found by walking the chain of the
// frames' HeaderPrev from there, in ascending order. A request that
// makes no sense is ErrInvalidQuery (nothing is read): a negative or too
// large Limit, a negative Last, Last with From, Since or Until, Before
// without Last, Until below From, a RoomID other than roomID.
func (s *Store) ReadLog(ctx context.Context, roomID string, fromSeq uint64, req subjects.HistoryRequest) (subjects.HistoryResponse, error) {
	if err := validRoomID(roomID); err != nil {
		return subjects.HistoryResponse{}, err
	}
	subject, err := subjects.Room(roomID)
	if err != nil {
		return subjects.HistoryResponse{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	limit, err := historyLimit(roomID, req)
	if err != nil {
		return subjects.HistoryResponse{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	resp := subjects.HistoryResponse{FirstSeq: fromSeq + 1}
	last, err := lastFromLeader(ctx, s.js.Conn(), StreamRoomLog, subject)
	switch {
	case errors.Is(err, errNoMessage):
		return resp, nil
	case err != nil:
		return subjects.HistoryResponse{}, fmt.Errorf("read the log of room %s: %w", roomID, err)
	}
	resp.LastSeq = last.seq
	if req.Last > 0 {
		frames, err := s.readBack(ctx, subject, fromSeq, req.Before, min(req.Last, limit), last)
		if err != nil {
			return subjects.HistoryResponse{}, fmt.Errorf("read the log of room %s: %w", roomID, err)
		}
		resp.Frames = frames
		return resp, nil
	}
	start := max(req.From, fromSeq+1)
	end := last.seq
	if req.Until > 0 {
		end = min(end, req.Until)
	}
	if end < start {
		return resp, nil
	}
	since := req.Since
	if req.From != 0 {
		since = time.Time{}
	}
	if !since.IsZero() && last.time.Before(since) {
		return resp, nil // nothing stored since
	}
	wait := laggingReplicaWait
	for attempt := 1; ; attempt++ {
		frames, next, reached, err := s.readForward(ctx, subject, start, end, since, limit)
		if err != nil {
			return subjects.HistoryResponse{}, fmt.Errorf("read the log of room %s: %w", roomID, err)
		}
		if next != 0 || reached {
			resp.Frames, resp.Next = frames, next
			return resp, nil
		}
		// The page ends before the leader's last frame (or Until), and
		// the replica that answered has nothing after it: it is behind
		// (or retention removed frames meanwhile). Read again; after
		// the last attempt, what there is with a Next to go on from, or
		// unavailable.
		if attempt == laggingReplicaAttempts {
			if len(frames) == 0 {
				return subjects.HistoryResponse{}, fmt.Errorf("read the log of room %s from %d: %w", roomID, start, errLogReplicaBehind)
			}
			resp.Frames, resp.Next = frames, frames[len(frames)-1].Seq+1
			return resp, nil
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return subjects.HistoryResponse{}, fmt.Errorf("read the log of room %s: %w", roomID, err)
		}
		wait *= 2
	}
}

// historyLimit validates req (see ReadLog) and returns its page's limit.
func historyLimit(roomID string, req subjects.HistoryRequest) (int, error) {
	switch {
	case req.RoomID != "" && req.RoomID != roomID:
		return 0, fmt.Errorf("%w: a request for room %q read as room %q", ErrInvalidQuery, req.RoomID, roomID)
	case req.Limit < 0 || req.Limit > subjects.MaxHistoryLimit:
		return 0, fmt.Errorf("%w: limit must be 0..%d, got %d", ErrInvalidQuery, subjects.MaxHistoryLimit, req.Limit)
	case req.Last < 0:
		return 0, fmt.Errorf("%w: last must not be negative, got %d", ErrInvalidQuery, req.Last)
	case req.Last > 0 && (req.From != 0 || !req.Since.IsZero() || req.Until != 0):
		return 0, fmt.Errorf("%w: last goes with before only, not with from, since or until", ErrInvalidQuery)
	case req.Last == 0 && req.Before != 0:
		return 0, fmt.Errorf("%w: before goes with last only", ErrInvalidQuery)
	case req.Until != 0 && req.Until < req.From:
		return 0, fmt.Errorf("%w: until %d is below from %d", ErrInvalidQuery, req.Until, req.From)
	}
	if req.Limit == 0 {
		return subjects.DefaultHistoryLimit, nil
	}
	return req.Limit, nil
}

// forwardBatch reads a forward page's batch (see readForward):
// pageByConsumer; pageByDirectGet in BenchmarkReadLogForward's baseline.
var forwardBatch = (*Store).pageByConsumer

// readForward reads a forward page of subject's frames from start up to
// end (both inclusive), or from the first stored at or after since when
// since is set (but not below start), with what one batch direct get
// answers (forwardBatch). next is the sequence to go on from when the
// page stopped at limit or at subjects.MaxHistoryPageBytes before end,
// else 0; reached says that the answer went as far as end (a message at
// end or after it).
func (s *Store) readForward(ctx context.Context, subject string, start, end uint64, since time.Time, limit int) (frames []subjects.StoredFrame, next uint64, reached bool, err error) {
	// The room's frames in start..end are at most end-start+1.
	batch := int(min(uint64(limit), end-start+1))
	req := directGetRequest{Seq: start, NextBySubj: subject, Batch: batch, MaxBytes: subjects.MaxHistoryPageBytes}
	if !since.IsZero() {
		req.Seq, req.StartTime = 0, &since
	}
	b, err := forwardBatch(s, ctx, req, batch)
	if err != nil {
		return nil, 0, false, err
	}
	if req.StartTime != nil && len(b.msgs) > 0 && b.msgs[0].seq < start {
		// Frames at or after since that the member may not see: from
		// start on, all were stored at or after since too.
		req.Seq, req.StartTime = start, nil
		if b, err = forwardBatch(s, ctx, req, batch); err != nil {
			return nil, 0, false, err
		}
	}
	frames = make([]subjects.StoredFrame, 0, len(b.msgs))
	size := 0
	for i, m := range b.msgs {
		if m.seq > end {
			return frames, 0, true, nil
		}
		if size+len(m.data) > subjects.MaxHistoryPageBytes && len(frames) > 0 {
			return frames, m.seq, false, nil
		}
		f, err := storedFrame(m, subject)
		if err != nil {
			return nil, 0, false, err
		}
		frames = append(frames, f)
		size += len(m.data)
		if m.seq == end {
			return frames, 0, true, nil
		}
		if i == len(b.msgs)-1 && b.pending > 0 {
			return frames, m.seq + 1, false, nil
		}
	}
	return frames, 0, false, nil
}

// readBack returns the last count frames of subject before before (or
// up to the newest, last, when before is 0) above fromSeq, walking the
// chain of HeaderPrev back, in ascending order. The walk stops at a
// frame that is gone (retention), at fromSeq, at count, or at
// subjects.MaxHistoryPageBytes of frames (after the first).
func (s *Store) readBack(ctx context.Context, subject string, fromSeq, before uint64, count int, last storedMsg) ([]subjects.StoredFrame, error) {
	cur := last
	if before > 0 && last.seq >= before {
		if before <= 1 {
			return nil, nil
		}
		b, err := directGetBatch(ctx, s.js.Conn(), StreamRoomLog, directGetRequest{MultiLastOf: []string{subject}, UpToSeq: before - 1}, 1)
		if err != nil {
			return nil, err
		}
		if len(b.msgs) == 0 {
			return nil, nil
		}
		cur = b.msgs[0]
	}
	var frames []subjects.StoredFrame
	size := 0
	for cur.seq > fromSeq && len(frames) < count {
		if size+len(cur.data) > subjects.MaxHistoryPageBytes && len(frames) > 0 {
			break
		}
		f, err := storedFrame(cur, subject)
		if err != nil {
			return nil, err
		}
		frames = append(frames, f)
		size += len(cur.data)
		if f.Prev == 0 || f.Prev <= fromSeq || len(frames) == count {
			break
		}
		if f.Prev >= f.Seq {
			return nil, fmt.Errorf("frame %d of %s: previous frame %d is not before it", f.Seq, subject, f.Prev)
		}
		next, err := getBySeq(ctx, s.js.Conn(), s.roomLog, f.Prev)
		if errors.Is(err, errNoMessage) {
			break // removed by retention
		}
		if err != nil {
			return nil, err
		}
		cur = next
	}
	slices.Reverse(frames)
	return frames, nil
}

// storedFrame is m, a message of subject, as a frame of the log.
func storedFrame(m storedMsg, subject string) (subjects.StoredFrame, error) {
	if m.subject != subject {
		return subjects.StoredFrame{}, fmt.Errorf("message %d is of %q, not of %s", m.seq, m.subject, subject)
	}
	var prev uint64
	if p := m.header.Get(subjects.HeaderPrev); p != "" {
		var err error
		if prev, err = strconv.ParseUint(p, 10, 64); err != nil {
			return subjects.StoredFrame{}, fmt.Errorf("message %d of %s: %s: %w", m.seq, subject, subjects.HeaderPrev, err)
		}
	}
	return subjects.StoredFrame{Seq: m.seq, Prev: prev, Time: m.time, Frame: m.data}, nil
}
