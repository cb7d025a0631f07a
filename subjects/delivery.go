package subjects

import (
	"fmt"
	"strings"
)

// Durable delivery: the subjects of the routing service and of the room log.
//
// A member never publishes to a room's subject itself. It sends a frame to
// Send(room, itself), a subject its permissions allow by pattern
// (SendOf(itself)), so that the server attests who sent it. The routing
// service (queue group RouterQueue) checks membership, appends the frame to
// the room log (the stream that captures RoomLogAll, at Room(room)),
// answers the sender with a SendAck, and delivers the frame into the
// inbox of each member, Deliver(member, room), which each member may
// subscribe to by pattern (DeliverOf(itself)). A delivery carries the
// frame's room-log sequence (HeaderSeq) and the sequence of the room's
// previous stored frame (HeaderPrev), so a member detects a gap and fills
// it from the log (RoomsHistory). User events (Event) are stored in a
// stream of their own at Events(user), which the user subscribes to.
// Nothing here grows with the number of rooms a user is in.
const (
	sendPrefix    = apiRoot + ".send."
	deliverPrefix = apiRoot + ".deliver."
	eventsPrefix  = apiRoot + ".events."
)

// Wildcards of the delivery subjects.
const (
	// SendAll is "unibus.v1.send.>", every send: what the routing service
	// subscribes to.
	SendAll = sendPrefix + fwc
	// DeliverAll is "unibus.v1.deliver.>", every member's deliveries: what
	// the routing service alone may publish to.
	DeliverAll = deliverPrefix + fwc
	// EventsAll is "unibus.v1.events.>", every user's events: what the
	// events stream captures and only the store may publish to.
	EventsAll = eventsPrefix + fwc
	// RoomLogAll is "unibus.v1.room.>", every room's frames: what the room
	// log stream captures and only the store may publish to.
	RoomLogAll = roomPrefix + fwc
)

// RouterQueue is the queue group of the routing service: any number of
// instances share the sends.
const RouterQueue = "unibus-router"

// Headers of deliveries and of the room log's messages.
const (
	// HeaderSeq is the frame's sequence in the room log, in decimal; "0"
	// when the room keeps no history (the frame was not stored).
	HeaderSeq = "Unibus-Seq"
	// HeaderPrev is the sequence of the room's previous stored frame, in
	// decimal: the room log's chain, which JetStream checks on append
	// (Nats-Expected-Last-Subject-Sequence), so that a member that holds
	// Prev and receives Seq knows it missed nothing. "0" when no earlier
	// frame of the room was retained.
	HeaderPrev = "Unibus-Prev"
)

// Send returns the subject a member sends a frame for roomID on,
// "unibus.v1.send.<roomID>.<pub>", after validating both.
func Send(roomID, pub string) (string, error) {
	if err := ValidateRoomID(roomID); err != nil {
		return "", err
	}
	key, err := NormalizeUserKey(pub)
	if err != nil {
		return "", err
	}
	return sendPrefix + roomID + sep + key, nil
}

// SendOf returns the pattern of every send by pub,
// "unibus.v1.send.*.<pub>": a peer's publish permission.
func SendOf(pub string) (string, error) {
	key, err := NormalizeUserKey(pub)
	if err != nil {
		return "", err
	}
	return sendPrefix + pwc + sep + key, nil
}

// ParseSend returns the room and sender of a send subject, the reverse of
// Send. It is strict: the error matches ErrInvalidSubject.
func ParseSend(subject string) (roomID, pub string, err error) {
	rest, ok := strings.CutPrefix(subject, sendPrefix)
	if !ok {
		return "", "", &invalidError{kind: ErrInvalidSubject, value: subject, reason: "not a send subject (want " + sendPrefix + "<room id>.<user key>)"}
	}
	roomID, pub, ok = strings.Cut(rest, sep)
	if !ok {
		return "", "", &invalidError{kind: ErrInvalidSubject, value: subject, reason: "no user key after the room"}
	}
	if err := ValidateRoomID(roomID); err != nil {
		return "", "", fmt.Errorf("%w %s: %w", ErrInvalidSubject, quote(subject), err)
	}
	if key, err := NormalizeUserKey(pub); err != nil || key != pub {
		return "", "", &invalidError{kind: ErrInvalidSubject, value: subject, reason: "the last token is not a user key in canonical form"}
	}
	return roomID, pub, nil
}

// Deliver returns the subject the routing service delivers roomID's frames
// to member pub on, "unibus.v1.deliver.<pub>.<roomID>".
func Deliver(pub, roomID string) (string, error) {
	key, err := NormalizeUserKey(pub)
	if err != nil {
		return "", err
	}
	if err := ValidateRoomID(roomID); err != nil {
		return "", err
	}
	return deliverPrefix + key + sep + roomID, nil
}

// DeliverOf returns the wildcard of every delivery to pub,
// "unibus.v1.deliver.<pub>.>": a peer's subscribe permission.
func DeliverOf(pub string) (string, error) {
	key, err := NormalizeUserKey(pub)
	if err != nil {
		return "", err
	}
	return deliverPrefix + key + sep + fwc, nil
}

// ParseDeliver returns the member and room of a delivery subject, the
// reverse of Deliver. The error matches ErrInvalidSubject.
func ParseDeliver(subject string) (pub, roomID string, err error) {
	rest, ok := strings.CutPrefix(subject, deliverPrefix)
	if !ok {
		return "", "", &invalidError{kind: ErrInvalidSubject, value: subject, reason: "not a delivery subject (want " + deliverPrefix + "<user key>.<room id>)"}
	}
	pub, roomID, ok = strings.Cut(rest, sep)
	if !ok {
		return "", "", &invalidError{kind: ErrInvalidSubject, value: subject, reason: "no room after the user key"}
	}
	if key, err := NormalizeUserKey(pub); err != nil || key != pub {
		return "", "", &invalidError{kind: ErrInvalidSubject, value: subject, reason: "the member token is not a user key in canonical form"}
	}
	if err := ValidateRoomID(roomID); err != nil {
		return "", "", fmt.Errorf("%w %s: %w", ErrInvalidSubject, quote(subject), err)
	}
	return pub, roomID, nil
}

// Events returns the subject of pub's events, "unibus.v1.events.<pub>": the
// events stream stores what is published there, and pub may subscribe to
// it (a doorbell: the stored events are read with UsersEvents).
func Events(pub string) (string, error) {
	key, err := NormalizeUserKey(pub)
	if err != nil {
		return "", err
	}
	return eventsPrefix + key, nil
}
