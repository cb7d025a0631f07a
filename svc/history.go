package svc

import (
	"context"
	"sync"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// This page serves durable delivery's reads, the room log and the users'
// events, and appends the events that the operations on rooms and users
// cause.

// history reads a page of a room's log, as much of it as the caller may
// see: the frames stored since it was invited (Member.FromSeq; the owner's
// since the room was created), while it is a member. A non-member, a
// removed member included, is 403 and sees nothing; a room that keeps no
// history has an empty log.
func (h *handlers) history(ctx context.Context, c caller, req *subjects.HistoryRequest) (subjects.HistoryResponse, error) {
	if err := checkHistoryRequest(req); err != nil {
		return subjects.HistoryResponse{}, err
	}
	room, err := h.room(ctx, req.RoomID)
	if err != nil {
		return subjects.HistoryResponse{}, err
	}
	m, err := h.store.GetMember(ctx, room.ID, c.pub)
	if err != nil {
		return subjects.HistoryResponse{}, storeError(err, storeMessages{notFound: "you are not a member of room " + room.ID, notFoundCode: subjects.CodeForbidden})
	}
	if room.History != subjects.HistoryKeep {
		return subjects.HistoryResponse{Frames: []subjects.StoredFrame{}}, nil
	}
	page, err := h.store.ReadLog(ctx, room.ID, m.FromSeq, *req)
	if err != nil {
		return subjects.HistoryResponse{}, storeError(err, storeMessages{
			notFound: "room " + room.ID + " not found",
			invalid:  "invalid history request: from, until, last, before and limit select no valid page",
		})
	}
	if page.Frames == nil {
		page.Frames = []subjects.StoredFrame{}
	}
	return page, nil
}

// checkHistoryRequest refuses (400) a page that asks for nothing sensible,
// before anything is read: a limit out of bounds, Last mixed with a
// forward page, Before without Last, Until before From.
func checkHistoryRequest(req *subjects.HistoryRequest) error {
	if _, err := parseRoomID(req.RoomID); err != nil {
		return err
	}
	switch {
	case req.Limit < 0 || req.Limit > subjects.MaxHistoryLimit:
		return badRequest("limit must be 0 (the default, %d) to %d, not %d", subjects.DefaultHistoryLimit, subjects.MaxHistoryLimit, req.Limit)
	case req.Last < 0 || req.Last > subjects.MaxHistoryLimit:
		return badRequest("last must be 0 (a forward page) to %d, not %d", subjects.MaxHistoryLimit, req.Last)
	case req.Last > 0 && (req.From != 0 || !req.Since.IsZero() || req.Until != 0):
		return badRequest("last asks for the last frames (before before, if set): omit from, since and until")
	case req.Last == 0 && req.Before != 0:
		return badRequest("before bounds last: set last too, or page forward with from and until")
	case req.Until != 0 && req.Until < req.From:
		return badRequest("until (%d) is below from (%d)", req.Until, req.From)
	}
	return nil
}

// events reads a page of the caller's own events.
func (h *handlers) events(ctx context.Context, c caller, req *subjects.EventsRequest) (subjects.EventsResponse, error) {
	if err := checkEventsRequest(req); err != nil {
		return subjects.EventsResponse{}, err
	}
	page, err := h.store.ReadEvents(ctx, c.pub, *req)
	if err != nil {
		return subjects.EventsResponse{}, storeError(err, storeMessages{invalid: "invalid events request: from and limit select no valid page"})
	}
	return page, nil
}

// checkEventsRequest refuses (400) a page of events whose limit is out of
// bounds.
func checkEventsRequest(req *subjects.EventsRequest) error {
	if req.Limit < 0 || req.Limit > subjects.MaxEventsLimit {
		return badRequest("limit must be 0 (the default, %d) to %d, not %d", subjects.DefaultEventsLimit, subjects.MaxEventsLimit, req.Limit)
	}
	return nil
}

// eventWorkers bounds the events one request appends at once.
const eventWorkers = 16

// notify appends ev to the events of each of users, after the change it
// tells of is committed. Events are notices (the control plane stays the
// authority), so a failed append is logged and fails nothing: the user
// still finds the change when it asks. The appends are bounded by the
// request's context.
func (h *handlers) notify(ctx context.Context, ev subjects.Event, users ...string) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	appendOne := func(pub string) {
		if _, err := h.store.AppendEvent(ctx, pub, ev); err != nil {
			h.cfg.Logger.Warn("event not stored", "type", ev.Type, "room", ev.RoomID, "pub", pub, "err", err)
		}
	}
	if len(users) <= 1 {
		for _, pub := range users {
			appendOne(pub)
		}
		return
	}
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(eventWorkers, len(users)) {
		wg.Go(func() {
			for pub := range work {
				appendOne(pub)
			}
		})
	}
	for _, pub := range users {
		work <- pub
	}
	close(work)
	wg.Wait()
}

// rekeyed appends EventRekeyed at epoch to the events of everyone who
// holds the room's keys from then on: keys are the sealed keys of the new
// epoch, one per remaining member and pending invitee.
func (h *handlers) rekeyed(ctx context.Context, by, roomID string, epoch uint64, keys map[string]kvstore.SealedKey) {
	users := make([]string, 0, len(keys))
	for pub := range keys {
		users = append(users, pub)
	}
	h.notify(ctx, subjects.Event{Type: subjects.EventRekeyed, RoomID: roomID, By: by, Epoch: epoch}, users...)
}
