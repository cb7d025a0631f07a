package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The streams' messages are read with JetStream's direct gets, which any
// replica answers from its copy: a batch (up to Batch messages of one
// subject from a sequence or a time, and an end-of-batch status), or the
// last message of a subject at or before a sequence (multi_last with
// up_to_seq). nats.go wraps neither (nats-server ≥ 2.11), so they are
// spoken here, as getLast speaks multi_last for the buckets. What must
// not be stale (a subject's last sequence) is read from the stream's
// leader (lastFromLeader).

// streamDirectGetSubject and streamMsgGetSubject are the JetStream API
// subjects of the direct get and of the leader's message get of stream.
func streamDirectGetSubject(stream string) string { return "$JS.API.DIRECT.GET." + stream }
func streamMsgGetSubject(stream string) string    { return "$JS.API.STREAM.MSG.GET." + stream }

// directGetRequest is the body of a direct get (nats-server's
// JSApiMsgGetRequest), as far as the store uses it.
type directGetRequest struct {
	Seq         uint64     `json:"seq,omitempty"`
	NextBySubj  string     `json:"next_by_subj,omitempty"`
	Batch       int        `json:"batch,omitempty"`
	MaxBytes    int        `json:"max_bytes,omitempty"`
	StartTime   *time.Time `json:"start_time,omitempty"`
	MultiLastOf []string   `json:"multi_last,omitempty"`
	UpToSeq     uint64     `json:"up_to_seq,omitempty"`
}

// storedMsg is one message of a stream as a read returns it.
type storedMsg struct {
	subject string
	seq     uint64
	time    time.Time
	header  nats.Header
	data    []byte
}

// directBatch is the answer to a batch direct get: the messages, and how
// many more match after the last of them (the end-of-batch status's
// Nats-Num-Pending).
type directBatch struct {
	msgs    []storedMsg
	pending uint64
}

// JetStream's headers of a direct get's answer (nats-server's JSSubject,
// JSSequence, JSTimeStamp, JSNumPending).
const (
	hdrSubject    = "Nats-Subject"
	hdrSequence   = "Nats-Sequence"
	hdrTimeStamp  = "Nats-Time-Stamp"
	hdrNumPending = "Nats-Num-Pending"
	hdrStatus     = "Status"
	hdrStatusDesc = "Description"
)

// directGetBatch sends req (a batch or a multi-last request of at most
// maxMsgs messages) to stream's direct get on nc and collects the answer
// until its end-of-batch status, within ctx. No match is an empty batch.
func directGetBatch(ctx context.Context, nc *nats.Conn, stream string, req directGetRequest, maxMsgs int) (directBatch, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return directBatch{}, fmt.Errorf("encode direct get: %w", err)
	}
	inbox := nc.NewRespInbox()
	// A channel sized for the batch and its end-of-batch status
	// (SubscribeSync would allocate the connection's SubChanLen).
	ch := make(chan *nats.Msg, maxMsgs+2)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return directBatch{}, fmt.Errorf("direct get %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(streamDirectGetSubject(stream), inbox, body); err != nil {
		return directBatch{}, fmt.Errorf("direct get %s: %w", stream, err)
	}
	var out directBatch
	for {
		var msg *nats.Msg
		select {
		case msg = <-ch:
		case <-ctx.Done():
			return directBatch{}, fmt.Errorf("direct get %s: %w", stream, ctx.Err())
		}
		if status := msg.Header.Get(hdrStatus); status != "" && len(msg.Data) == 0 {
			switch status {
			case "204": // end of batch
				if p := msg.Header.Get(hdrNumPending); p != "" {
					out.pending, _ = strconv.ParseUint(p, 10, 64)
				}
				return out, nil
			case "404": // no match
				return out, nil
			case "413": // a multi-last get that matches too many
				return directBatch{}, fmt.Errorf("direct get %s: %w", stream, errTooManyResults)
			default:
				return directBatch{}, fmt.Errorf("direct get %s: status %s %s", stream, status, msg.Header.Get(hdrStatusDesc))
			}
		}
		m, err := directMsg(msg)
		if err != nil {
			return directBatch{}, fmt.Errorf("direct get %s: %w", stream, err)
		}
		if len(out.msgs) == maxMsgs {
			return directBatch{}, fmt.Errorf("direct get %s: more than the %d messages asked for", stream, maxMsgs)
		}
		out.msgs = append(out.msgs, m)
	}
}

// directMsg decodes one message of a direct get's answer.
func directMsg(msg *nats.Msg) (storedMsg, error) {
	seq, err := strconv.ParseUint(msg.Header.Get(hdrSequence), 10, 64)
	if err != nil || seq == 0 {
		return storedMsg{}, fmt.Errorf("a message without a sequence (%q)", msg.Header.Get(hdrSequence))
	}
	ts, err := time.Parse(time.RFC3339Nano, msg.Header.Get(hdrTimeStamp))
	if err != nil {
		return storedMsg{}, fmt.Errorf("message %d: time stamp: %w", seq, err)
	}
	return storedMsg{subject: msg.Header.Get(hdrSubject), seq: seq, time: ts, header: msg.Header, data: msg.Data}, nil
}

// errNoMessage means a stream holds no message where one was looked for.
var errNoMessage = errors.New("no message")

// lastFromLeader returns the last message of subject in stream, read
// from the stream's leader (never stale; no leader, no answer), or
// errNoMessage.
func lastFromLeader(ctx context.Context, nc *nats.Conn, stream, subject string) (storedMsg, error) {
	return streamLeaderGet(ctx, nc, stream, subject, struct {
		LastBySubject string `json:"last_by_subj"`
	}{subject})
}

// seqFromLeader returns message seq of stream, read from the stream's
// leader, or errNoMessage.
func seqFromLeader(ctx context.Context, nc *nats.Conn, stream string, seq uint64) (storedMsg, error) {
	return streamLeaderGet(ctx, nc, stream, strconv.FormatUint(seq, 10), struct {
		Seq uint64 `json:"seq"`
	}{seq})
}

// streamLeaderGet sends req, a message get (of subject, for errors), to
// stream's leader and returns the message, or errNoMessage.
func streamLeaderGet(ctx context.Context, nc *nats.Conn, stream, subject string, req any) (storedMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return storedMsg{}, fmt.Errorf("encode leader get: %w", err)
	}
	msg, err := nc.RequestWithContext(ctx, streamMsgGetSubject(stream), body)
	if err != nil {
		return storedMsg{}, fmt.Errorf("leader get %s %s: %w", stream, subject, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return storedMsg{}, fmt.Errorf("leader get %s %s: decode: %w", stream, subject, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == jsErrCodeMessageNotFound {
			return storedMsg{}, errNoMessage
		}
		return storedMsg{}, fmt.Errorf("leader get %s %s: %d %s", stream, subject, resp.Error.Code, resp.Error.Description)
	}
	if resp.Message == nil {
		return storedMsg{}, fmt.Errorf("leader get %s %s: empty reply", stream, subject)
	}
	out := storedMsg{subject: resp.Message.Subject, seq: resp.Message.Sequence, time: resp.Message.Time, data: resp.Message.Data}
	if len(resp.Message.Header) > 0 {
		if out.header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return storedMsg{}, fmt.Errorf("leader get %s %s: headers: %w", stream, subject, err)
		}
	}
	return out, nil
}

// getBySeq returns the message seq of stream with a direct get, or,
// when the replica that answers has none, from the stream's leader (a
// replica may be behind), or errNoMessage.
func getBySeq(ctx context.Context, nc *nats.Conn, stream jetstream.Stream, seq uint64) (storedMsg, error) {
	m, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return seqFromLeader(ctx, nc, stream.CachedInfo().Config.Name, seq)
	}
	if err != nil {
		return storedMsg{}, fmt.Errorf("get message %d: %w", seq, err)
	}
	return storedMsg{subject: m.Subject, seq: m.Sequence, time: m.Time, header: m.Header, data: m.Data}, nil
}
