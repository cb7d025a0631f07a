package router

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

// runShard handles the sends of the rooms hashed to ch, one at a time in
// arrival order, until ch is closed and drained.
func (r *Router) runShard(ch <-chan *send) {
	sh := &shard{targets: map[string]*targets{}}
	for s := range ch {
		if f := r.process(sh, s); f != nil {
			r.finish(s, f)
		}
	}
}

// shard is what one shard goroutine keeps between sends: the delivery
// subjects of its rooms' members, so that a room's frames do not build
// and validate them again while the members stay the same.
type shard struct {
	targets map[string]*targets
}

// targets are a room's members and their delivery subjects.
type targets struct {
	members  []string
	subjects []string
}

// maxCachedRooms bounds the rooms whose delivery subjects one shard
// keeps; beyond it the cache starts over.
const maxCachedRooms = 4096

// deliveryTargets returns the delivery subjects of members in roomID,
// from the cache when the members are the same as last time.
func (sh *shard) deliveryTargets(roomID string, members []string) []string {
	if t, ok := sh.targets[roomID]; ok && slices.Equal(t.members, members) {
		return t.subjects
	}
	t := &targets{members: members, subjects: make([]string, 0, len(members))}
	for _, m := range members {
		subject, err := subjects.Deliver(m, roomID)
		if err != nil {
			continue // not a user key: the view holds only valid records
		}
		t.subjects = append(t.subjects, subject)
	}
	if len(sh.targets) >= maxCachedRooms {
		clear(sh.targets)
	}
	sh.targets[roomID] = t
	return t.subjects
}

// process checks the frame, appends it to the room log when the room keeps
// history, delivers it to every member (unless the log held it already)
// and acknowledges it. A refusal is returned to answer.
//
// The frame must be well formed (e2e.Decode), of the subject's room and
// sender, and of the room's mode. Its signature is not verified here:
// the server attests the sender (a peer publishes only to its own send
// subjects), so a frame with a bad signature can only be one its sender
// spoiled itself, and every receiver verifies each frame (and the
// sender's key grant) before it trusts it. Verifying here would double
// the work of a room's shard for nothing a receiver does not check.
func (r *Router) process(sh *shard, s *send) *refusal {
	f, err := e2e.Decode(s.data)
	if err != nil {
		if errors.Is(err, e2e.ErrFrameTooLarge) {
			return refuse(subjects.CodeTooLarge, err, "the frame's payload is over the limit of %d bytes", e2e.MaxPayloadSize)
		}
		return refuse(subjects.CodeBadRequest, err, "not a frame: the body must be a frame in the client/e2e wire format")
	}
	switch {
	case f.Room != s.room:
		return refuse(subjects.CodeBadRequest, nil, "the frame is for room %s, not for room %s of the subject", f.Room, s.room)
	case f.Sender != s.pub:
		return refuse(subjects.CodeBadRequest, nil, "the frame's sender is %s, not %s of the subject", f.Sender, s.pub)
	case f.Clear && s.policy.Mode == subjects.ModeE2E:
		return refuse(subjects.CodeBadRequest, nil, "room %s is encrypted: a cleartext frame is refused", s.room)
	case !f.Clear && s.policy.Mode == subjects.ModeCleartext:
		return refuse(subjects.CodeBadRequest, nil, "room %s is cleartext: send cleartext frames", s.room)
	}
	ack := subjects.SendAck{ID: f.ID()}
	var prev uint64
	if s.policy.History == subjects.HistoryKeep {
		la, err := r.cfg.Store.AppendFrame(r.life, s.room, ack.ID, s.data, s.policy.MaxAge)
		if err != nil {
			return refuse(subjects.CodeUnavailable, err, msgUnavailable)
		}
		ack.Seq, ack.Duplicate, prev = la.Seq, la.Duplicate, la.Prev
		if la.Duplicate {
			r.stats.duplicates.Add(1)
		} else {
			r.stats.stored.Add(1)
		}
	}
	// A duplicate is delivered again, under the first copy's sequence:
	// members drop what they hold by sequence, and a frame stored by a
	// router that stopped before delivering it (the sender retries when no
	// ack comes) still reaches them now rather than with the room's next
	// frame. Its predecessor is not known (prev 0), so a member that holds
	// less reads the gap from the log.
	r.deliver(sh, s, ack.Seq, prev)
	r.stats.sent.Add(1)
	r.stats.done(s.start)
	if s.reply != "" {
		body, _ := json.Marshal(ack) // a string, an integer and a bool
		r.reply(&nats.Msg{Subject: s.reply, Data: body})
	}
	return nil
}

// deliver publishes the frame to every current member of its room, the
// sender included, with its sequence and the previous one. A delivery that
// cannot be published is logged and counted: the member fills the gap
// from the log.
func (r *Router) deliver(sh *shard, s *send, seq, prev uint64) {
	header := nats.Header{
		subjects.HeaderSeq:  {strconv.FormatUint(seq, 10)},
		subjects.HeaderPrev: {strconv.FormatUint(prev, 10)},
	}
	for _, subject := range sh.deliveryTargets(s.room, r.view.Members(s.room)) {
		// PublishMsg encodes the message before it returns: one header
		// serves every delivery.
		if err := r.cfg.Conn.PublishMsg(&nats.Msg{Subject: subject, Header: header, Data: s.data}); err != nil {
			r.stats.deliveryErrors.Add(1)
			if r.logs.Allow() {
				r.log.Warn("delivery not published", "room", s.room, "subject", subject, "seq", seq, "err", err)
			}
			continue
		}
		r.stats.delivered.Add(1)
	}
}
