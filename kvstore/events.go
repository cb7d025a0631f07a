package kvstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/subjects"
)

// Events. The services append an event (subjects.Event) for the user it
// concerns once the change is committed; the user reads its events from
// a sequence on (ReadEvents), woken by the stored message itself, which
// it may subscribe to at subjects.Events(itself). The events stream keeps
// EventsMaxPerUser events per user for InvitationTTL.

// AppendEvent stores ev for pub at subjects.Events(pub) and returns its
// sequence. ev.Seq is ignored; a zero ev.Time is now. An unknown type or
// a bad key is ErrInvalid.
func (s *Store) AppendEvent(ctx context.Context, pub string, ev subjects.Event) (uint64, error) {
	pub, err := normalizeUser(pub)
	if err != nil {
		return 0, err
	}
	switch ev.Type {
	case subjects.EventInvited, subjects.EventRemoved, subjects.EventRekeyed, subjects.EventRevoked:
	default:
		return 0, fmt.Errorf("%w: unknown event type %q", ErrInvalid, ev.Type)
	}
	if ev.RoomID != "" {
		if err := validRoomID(ev.RoomID); err != nil {
			return 0, err
		}
	}
	subject, err := subjects.Events(pub)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ev.Seq = 0
	if ev.Time.IsZero() {
		ev.Time = s.now().UTC()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("encode event: %w", err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	msg := nats.NewMsg(subject)
	msg.Data = data
	ack, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(StreamEvents))
	if err != nil {
		return 0, fmt.Errorf("append %s event for %s: %w", ev.Type, pub, err)
	}
	return ack.Sequence, nil
}

// ReadEvents returns a page of pub's events from req.From on (0: the
// oldest kept), at most req.Limit (0: subjects.DefaultEventsLimit), with
// each event's Seq set, Next when the page stopped at its limit, and
// LastSeq the sequence of pub's last event (0: none). A negative or too
// large limit is ErrInvalidQuery.
func (s *Store) ReadEvents(ctx context.Context, pub string, req subjects.EventsRequest) (subjects.EventsResponse, error) {
	pub, err := normalizeUser(pub)
	if err != nil {
		return subjects.EventsResponse{}, err
	}
	if req.Limit < 0 || req.Limit > subjects.MaxEventsLimit {
		return subjects.EventsResponse{}, fmt.Errorf("%w: limit must be 0..%d, got %d", ErrInvalidQuery, subjects.MaxEventsLimit, req.Limit)
	}
	limit := req.Limit
	if limit == 0 {
		limit = subjects.DefaultEventsLimit
	}
	subject, err := subjects.Events(pub)
	if err != nil {
		return subjects.EventsResponse{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var resp subjects.EventsResponse
	if resp.LastSeq, err = s.lastSeqOf(ctx, StreamEvents, subject); err != nil {
		return subjects.EventsResponse{}, fmt.Errorf("read the events of %s: %w", pub, err)
	}
	start := max(req.From, 1)
	if resp.LastSeq < start {
		return resp, nil
	}
	wait := laggingReplicaWait
	for attempt := 1; ; attempt++ {
		b, err := directGetBatch(ctx, s.js.Conn(), StreamEvents, directGetRequest{Seq: start, NextBySubj: subject, Batch: limit}, limit)
		if err != nil {
			return subjects.EventsResponse{}, fmt.Errorf("read the events of %s: %w", pub, err)
		}
		n := len(b.msgs)
		behind := b.pending == 0 && (n == 0 || b.msgs[n-1].seq < resp.LastSeq)
		switch {
		case n > 0 && b.pending > 0:
			resp.Next = b.msgs[n-1].seq + 1
		case behind && attempt < laggingReplicaAttempts:
			// The replica that answered is behind the leader: again.
			if err := sleepCtx(ctx, wait); err != nil {
				return subjects.EventsResponse{}, fmt.Errorf("read the events of %s: %w", pub, err)
			}
			wait *= 2
			continue
		case behind && n == 0:
			return subjects.EventsResponse{}, fmt.Errorf("read the events of %s from %d: %w", pub, start, errLogReplicaBehind)
		case behind:
			resp.Next = b.msgs[n-1].seq + 1
		}
		resp.Events = make([]subjects.Event, 0, n)
		for _, m := range b.msgs {
			var ev subjects.Event
			err := json.Unmarshal(m.data, &ev)
			if err == nil && m.subject != subject {
				err = fmt.Errorf("an event of %q", m.subject)
			}
			if err != nil {
				s.logger.Warn("invalid event left out", "stream", StreamEvents, "seq", m.seq, "reason", err.Error())
				continue
			}
			ev.Seq = m.seq
			resp.Events = append(resp.Events, ev)
		}
		return resp, nil
	}
}
