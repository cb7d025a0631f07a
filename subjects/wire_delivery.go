package subjects

import (
	"encoding/json"
	"time"
)

// SendAck is the routing service's reply to a send that has a reply
// subject (an acknowledged send): the frame is stored, or, in a room that
// keeps no history, delivered. A refused send gets an ErrorBody instead:
// 400 (not a frame of this room and sender), 403 (not a member), 404 (no
// such room), 413 (frame too large), 429 (over the member's send rate),
// 503 (the log could not store it; retry: the same frame is stored once).
type SendAck struct {
	// ID is the frame's ID (e2e.Frame.ID).
	ID string `json:"id"`
	// Seq is the frame's sequence in the room log; 0 when the room keeps
	// no history.
	Seq uint64 `json:"seq"`
	// Duplicate is true when the log already held this frame (a retried
	// send): Seq is the first copy's; the frame is delivered again under
	// it, and members that hold it drop it.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Limits of RoomsHistory pages.
const (
	// DefaultHistoryLimit is a page's number of frames when
	// HistoryRequest.Limit is 0.
	DefaultHistoryLimit = 100
	// MaxHistoryLimit is the most frames a page holds.
	MaxHistoryLimit = 1000
	// MaxHistoryPageBytes bounds the frames of a page, in bytes before
	// base64: a page stops before the frame that would pass it (a page
	// always holds at least one frame when one is due).
	MaxHistoryPageBytes = 512 << 10
)

// HistoryRequest is the body of RoomsHistory: a page of the room log, as
// much of it as the caller may see (from its invitation on, while it is a
// member). Without Last, the page runs forward from From or Since; with
// Last, it is the last Last frames before Before (or the end). Frames come
// in ascending sequence either way.
type HistoryRequest struct {
	// RoomID is the room.
	RoomID string `json:"room_id"`
	// From is the first sequence wanted (inclusive); 0 is the first the
	// caller may see.
	From uint64 `json:"from,omitempty"`
	// Since, when set and From is 0, starts at the first frame stored at
	// or after it.
	Since time.Time `json:"since,omitzero"`
	// Until, when set, is the last sequence wanted (inclusive): filling a
	// gap asks for exactly the frames missing.
	Until uint64 `json:"until,omitempty"`
	// Last asks for the last Last frames (at most Limit) instead: before
	// Before when set (scrolling back), else the newest.
	Last int `json:"last,omitempty"`
	// Before bounds Last: only frames with a sequence below it.
	Before uint64 `json:"before,omitempty"`
	// Limit is the most frames of the page: 0 means DefaultHistoryLimit;
	// at most MaxHistoryLimit.
	Limit int `json:"limit,omitempty"`
}

// StoredFrame is one frame of the room log, as sent: sealed in an
// encrypted room.
type StoredFrame struct {
	// Seq is the frame's sequence in the room log.
	Seq uint64 `json:"seq"`
	// Prev is the sequence of the room's frame before it (HeaderPrev).
	Prev uint64 `json:"prev"`
	// Time is when the log stored it.
	Time time.Time `json:"time"`
	// Frame is the frame's bytes.
	Frame []byte `json:"frame"`
}

// HistoryResponse is the reply of RoomsHistory.
type HistoryResponse struct {
	// Frames are the page, in ascending sequence; [] when empty, never
	// null (the service makes it so: a MarshalJSON method here would make
	// encoding/json scan every page twice, and pages are large).
	Frames []StoredFrame `json:"frames"`
	// Next, in a forward page that stopped at its limit, is the From of
	// the next page; 0 when the page reached Until or the end of the log.
	Next uint64 `json:"next,omitempty"`
	// LastSeq is the sequence of the room's newest stored frame when the
	// page was read (0: none): a subscription that starts with new frames
	// only starts after it.
	LastSeq uint64 `json:"last_seq"`
	// FirstSeq is the first sequence the caller may see: frames below it
	// were stored before its invitation.
	FirstSeq uint64 `json:"first_seq"`
}

// Event types (Event.Type): what happened to the user.
const (
	// EventInvited: the user was invited to Event.RoomID by Event.By.
	EventInvited = "invited"
	// EventRemoved: the user was removed from Event.RoomID by Event.By.
	EventRemoved = "removed"
	// EventRekeyed: Event.RoomID, which the user is a member of or invited
	// to, moved to key epoch Event.Epoch.
	EventRekeyed = "rekeyed"
	// EventRevoked: an administrator (Event.By) revoked the user.
	EventRevoked = "revoked"
)

// Event is one thing that happened to a user, stored in the events stream
// at Events(user) and read back with UsersEvents. Events are notices, not
// proof: a client acts on one by asking the control plane (its
// invitations, its rooms, the room's key), which is what it trusts.
type Event struct {
	// Seq is the event's sequence in the events stream (set when read).
	Seq uint64 `json:"seq,omitempty"`
	// Type is one of the Event… constants.
	Type string `json:"type"`
	// RoomID is the room concerned, if any.
	RoomID string `json:"room_id,omitempty"`
	// By is the user who caused it, if any.
	By string `json:"by,omitempty"`
	// Epoch is the room's new key epoch (EventRekeyed).
	Epoch uint64 `json:"epoch,omitempty"`
	// Time is when it happened.
	Time time.Time `json:"time"`
}

// Limits of UsersEvents pages.
const (
	// DefaultEventsLimit is a page's number of events when
	// EventsRequest.Limit is 0.
	DefaultEventsLimit = 100
	// MaxEventsLimit is the most events a page holds.
	MaxEventsLimit = 1000
)

// EventsRequest is the body of UsersEvents: the caller's own events, from
// From on.
type EventsRequest struct {
	// From is the first sequence wanted (inclusive); 0 is the oldest kept.
	From uint64 `json:"from,omitempty"`
	// Limit is the most events of the page: 0 means DefaultEventsLimit; at
	// most MaxEventsLimit.
	Limit int `json:"limit,omitempty"`
}

// EventsResponse is the reply of UsersEvents.
type EventsResponse struct {
	// Events are the page, in ascending sequence.
	Events []Event `json:"events"`
	// Next is the From of the next page when this one stopped at its
	// limit; 0 when it reached the end.
	Next uint64 `json:"next,omitempty"`
	// LastSeq is the events stream's last sequence when read: a client that
	// starts with new events only starts after it.
	LastSeq uint64 `json:"last_seq"`
}

// MarshalJSON encodes an empty page as [], never null.
func (r EventsResponse) MarshalJSON() ([]byte, error) {
	type plain EventsResponse
	if r.Events == nil {
		r.Events = []Event{}
	}
	return json.Marshal(plain(r))
}
