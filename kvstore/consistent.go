package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Consistent reads: what the auth callout decides admission from is read
// as the stream leaders know it, not as a follower that a write has not
// reached yet.
//
// A leader answers one message per request ($JS.API.STREAM.MSG.GET), so
// a user's rooms are not read one by one from it. Instead the leader is
// asked for the sequence of the newest message under the user's keys
// (last_by_subj with a wildcard: one request, answered from its subject
// index) while, at the same time, the keys' values are read with one
// multi-last direct get, which any replica answers and ends with the
// sequence its snapshot reached (Nats-UpTo-Sequence). A snapshot at or
// past the leader's sequence holds every write the leader had made under
// those keys: it is as fresh as the leader was when asked, so it holds
// every change acknowledged before the read began. An older one (a
// follower behind) is asked again, briefly backing off, until the read's
// deadline: a replica that never catches up denies (fails closed), never
// admits from stale data.

// Pauses between two direct gets while the replica that answers is
// behind the leader: the first, doubling up to the last.
const (
	freshRetryFirst = time.Millisecond
	freshRetryMax   = 20 * time.Millisecond
)

// Headers of JetStream's direct get answers.
const (
	upToSequenceHeader = "Nats-UpTo-Sequence"
	kvOperationHeader  = "KV-Operation"
)

// errReplicaBehind means the replica that answered a direct get had not
// yet stored what the leader had.
var errReplicaBehind = errors.New("replica behind the leader")

// ListRoomsForEndpointFromLeader is ListRoomsForEndpoint for admission:
// which rooms pub belongs to (the rooms-by-member index, roles included)
// is read as fresh as the index stream's leader knows it, so a member
// removed a moment ago is not granted the room by a follower that has not
// seen the removal yet, and a member just added is not left out. The
// rooms' records come from any replica, and from the room stream's leader
// when the replica answering lacks one (a room created a moment ago):
// their subjects, which the callout grants, never change; other fields
// (epoch, name) may lag as in ListRoomsForEndpoint. Any backend error, or
// a replica still behind at the deadline, is an error: fail closed.
func (s *Store) ListRoomsForEndpointFromLeader(ctx context.Context, pub string) ([]RoomRef, error) {
	pub, err := normalizeUser(pub)
	if err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	nc := s.js.Conn()
	index, err := readFresh(ctx, nc, BucketRoomsByMember, pub+".*")
	if err != nil {
		return nil, fmt.Errorf("list rooms of %s: %w", pub, err)
	}
	roles := make(map[string]string, len(index))
	ids := make([]string, 0, len(index))
	for _, idx := range decodeRecords[indexEntry](s, BucketRoomsByMember, index) {
		roles[idx.RoomID] = idx.Role
		ids = append(ids, idx.RoomID)
	}
	out := make([]RoomRef, 0, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	entries, err := getLast(ctx, s.js, BucketRooms, ids)
	if err != nil {
		return nil, fmt.Errorf("list rooms of %s: %w", pub, err)
	}
	rooms := decodeRecords[Room](s, BucketRooms, entries)
	found := make(map[string]bool, len(rooms))
	for _, r := range rooms {
		found[r.ID] = true
	}
	for _, id := range ids {
		if found[id] {
			continue
		}
		data, _, err := getFromLeader(ctx, nc, BucketRooms, id)
		if errors.Is(err, ErrNotFound) {
			continue // half-created, deleted or not valid: left out
		}
		if err != nil {
			return nil, fmt.Errorf("list rooms of %s: %w", pub, err)
		}
		if r, err := decodeRecord[Room](s, BucketRooms, id, data); err == nil {
			rooms = append(rooms, r)
		}
	}
	for _, r := range rooms {
		out = append(out, roomRefOf(r, roles[r.ID]))
	}
	return out, nil
}

// roomRefOf is what a member with role needs of room r.
func roomRefOf(r Room, role string) RoomRef {
	return RoomRef{
		RoomID: r.ID, Subject: r.Subject, Epoch: r.Epoch,
		History: r.History, Role: role, Mode: r.Mode,
		Name: r.Name, Owner: r.Owner, Salt: r.Salt,
	}
}

// readFresh returns the current entries of bucket whose keys match filter
// (one wildcard pattern), as fresh as the stream leader knows them: the
// leader's newest sequence under filter, asked at the same time as a
// multi-last direct get (one round trip's latency, not two), then more
// direct gets while the one that answered comes from a snapshot that had
// not reached it. More matches than one direct get returns, or a server
// that does not report its snapshot's sequence, are read from the leader
// key by key instead.
func readFresh(ctx context.Context, nc *nats.Conn, bucket, filter string) ([]entry, error) {
	type leaderAnswer struct {
		last uint64
		err  error
	}
	fromLeader := make(chan leaderAnswer, 1)
	go func() {
		last, err := lastSeqFromLeader(ctx, nc, bucket, filter)
		fromLeader <- leaderAnswer{last, err}
	}()
	entries, upTo, err := getLastUpTo(ctx, nc, bucket, filter)
	leader := <-fromLeader // bounded by ctx, like every request
	if errors.Is(leader.err, ErrNotFound) {
		return nil, nil // the leader holds nothing under filter
	}
	if leader.err != nil {
		return nil, leader.err
	}
	pause := freshRetryFirst
	for {
		switch {
		case err == nil && upTo >= leader.last:
			return entries, nil
		case errors.Is(err, errTooManyResults), err == nil && upTo == 0:
			return listFromLeader(ctx, nc, bucket, filter)
		case err == nil:
			err = fmt.Errorf("%w: at sequence %d, the leader at %d", errReplicaBehind, upTo, leader.last)
		case !errors.Is(err, errReplicaBehind):
			return nil, err
		}
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("read %s/%s: %w: %w", bucket, filter, err, ctx.Err())
		}
		pause = min(2*pause, freshRetryMax)
		entries, upTo, err = getLastUpTo(ctx, nc, bucket, filter)
	}
}

// leaderGetRequest is JetStream's $JS.API.STREAM.MSG.GET request.
type leaderGetRequest struct {
	Seq       uint64 `json:"seq,omitempty"`
	LastFor   string `json:"last_by_subj,omitempty"`
	NextFor   string `json:"next_by_subj,omitempty"`
	NoHeaders bool   `json:"no_hdr,omitempty"`
}

// leaderGet sends one $JS.API.STREAM.MSG.GET request to bucket's stream
// leader. A leader that holds no such message is ErrNotFound.
func leaderGet(ctx context.Context, nc *nats.Conn, bucket string, req leaderGetRequest) (*msgGetResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode leader get: %w", err)
	}
	msg, err := nc.RequestWithContext(ctx, leaderGetSubject(bucket), body)
	if err != nil {
		return nil, fmt.Errorf("leader get %s: %w", bucket, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("leader get %s: decode: %w", bucket, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == jsErrCodeMessageNotFound {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("leader get %s: %d %s", bucket, resp.Error.Code, resp.Error.Description)
	}
	if resp.Message == nil {
		return nil, fmt.Errorf("leader get %s: empty reply", bucket)
	}
	return &resp, nil
}

// lastSeqFromLeader returns the sequence of the newest message under
// filter (deletions included) in bucket's stream, as its leader holds it.
func lastSeqFromLeader(ctx context.Context, nc *nats.Conn, bucket, filter string) (uint64, error) {
	resp, err := leaderGet(ctx, nc, bucket, leaderGetRequest{LastFor: kvKeySubject(bucket, filter), NoHeaders: true})
	if err != nil {
		return 0, err
	}
	return resp.Message.Sequence, nil
}

// listFromLeader returns the current entries under filter as bucket's
// stream leader holds them, one message per request (next_by_subj from
// the sequence after the previous one): the slow path, for more matches
// than one direct get returns.
func listFromLeader(ctx context.Context, nc *nats.Conn, bucket, filter string) ([]entry, error) {
	prefix := kvKeyPrefix(bucket)
	current := map[string][]byte{}
	var order []string
	for seq := uint64(1); ; {
		resp, err := leaderGet(ctx, nc, bucket, leaderGetRequest{Seq: seq, NextFor: prefix + filter})
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		m := resp.Message
		key, ok := strings.CutPrefix(m.Subject, prefix)
		if !ok {
			return nil, fmt.Errorf("leader get %s: unexpected subject %q", bucket, m.Subject)
		}
		deleted := false
		if len(m.Header) > 0 {
			h, err := nats.DecodeHeadersMsg(m.Header)
			if err != nil {
				return nil, fmt.Errorf("leader get %s/%s: headers: %w", bucket, key, err)
			}
			op := h.Get(kvOperationHeader)
			deleted = op == "DEL" || op == "PURGE"
		}
		if _, seen := current[key]; !seen {
			order = append(order, key)
		}
		if deleted {
			current[key] = nil
		} else {
			current[key] = m.Data
		}
		seq = m.Sequence + 1
	}
	out := make([]entry, 0, len(order))
	for _, key := range order {
		if v := current[key]; v != nil {
			out = append(out, entry{key: key, value: v})
		}
	}
	return out, nil
}

// getLastUpTo is one multi-last direct get of the keys matching filter:
// their current entries (deletions left out) and the stream sequence the
// answering replica's snapshot reached (zero if it did not say). No match
// at all is errReplicaBehind: the caller asks only when the leader holds
// a message under filter.
func getLastUpTo(ctx context.Context, nc *nats.Conn, bucket, filter string) ([]entry, uint64, error) {
	prefix := kvKeyPrefix(bucket)
	req, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
	}{[]string{prefix + filter}})
	if err != nil {
		return nil, 0, fmt.Errorf("encode direct get: %w", err)
	}
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, maxMultiLast+1)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, 0, fmt.Errorf("direct get %s: %w", bucket, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(directGetSubject(bucket), inbox, req); err != nil {
		return nil, 0, fmt.Errorf("direct get %s: %w", bucket, err)
	}
	var out []entry
	for {
		var msg *nats.Msg
		select {
		case msg = <-ch:
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("direct get %s: %w", bucket, ctx.Err())
		}
		if len(msg.Data) == 0 && msg.Header != nil {
			switch status := msg.Header.Get("Status"); status {
			case "204": // end of batch
				upTo, _ := strconv.ParseUint(msg.Header.Get(upToSequenceHeader), 10, 64)
				return out, upTo, nil
			case "404":
				return nil, 0, fmt.Errorf("direct get %s: %w: no match", bucket, errReplicaBehind)
			case "413":
				return nil, 0, fmt.Errorf("direct get %s: %w", bucket, errTooManyResults)
			case "":
			default:
				return nil, 0, fmt.Errorf("direct get %s: status %s %s", bucket, status, msg.Header.Get("Description"))
			}
		}
		if op := msg.Header.Get(kvOperationHeader); op == "DEL" || op == "PURGE" {
			continue
		}
		subj := msg.Header.Get(jetstream.SubjectHeader)
		key, ok := strings.CutPrefix(subj, prefix)
		if !ok {
			return nil, 0, fmt.Errorf("direct get %s: unexpected subject %q", bucket, subj)
		}
		out = append(out, entry{key: key, value: msg.Data})
	}
}
