package kvstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A forward page of the room log is read through an ephemeral pull
// consumer of the room's subject rather than with a batch direct get:
// the server answers a batch direct get of messages that have headers
// (every frame has subjects.HeaderPrev) by rewriting each message's
// headers six times (nats-server's genHeader), and the client parses
// them all again, so that a direct get costs the machine two to three
// times the CPU of a consumer's delivery per message
// (BenchmarkReadLogForward). The consumer answers exactly what the batch
// direct get would (consumerBatch; a message too large for the pull's
// byte bound is read with a direct get, oneMore); when the consumer
// fails (not created, no responders), the batch direct get answers.

const (
	// pageConsumerInactive is when the server removes a page's consumer
	// that its reader could not delete.
	pageConsumerInactive = 10 * time.Second
	// pageMsgOverhead bounds a message's subject, headers and ack reply
	// in a page's pull: the pull asks for its batch's byte bound and this
	// per message (see consumerBatch).
	pageMsgOverhead = 512
)

// pageByDirectGet reads a forward page's batch (req) with a batch direct
// get.
func (s *Store) pageByDirectGet(ctx context.Context, req directGetRequest, maxMsgs int) (directBatch, error) {
	return directGetBatch(ctx, s.js.Conn(), StreamRoomLog, req, maxMsgs)
}

// pageByConsumer reads a forward page's batch (req) through a consumer
// (consumerBatch), or, when that fails while ctx is not done, with a
// batch direct get.
func (s *Store) pageByConsumer(ctx context.Context, req directGetRequest, maxMsgs int) (directBatch, error) {
	b, err := consumerBatch(ctx, s.js.Conn(), s.roomLog, req, maxMsgs)
	if err == nil || ctx.Err() != nil {
		return b, err
	}
	return s.pageByDirectGet(ctx, req, maxMsgs)
}

// consumerBatch returns what the batch direct get req (NextBySubj from
// Seq or from StartTime, Batch messages, MaxBytes; maxMsgs its Batch)
// answers, the messages and how many more of the subject follow them,
// read through an ephemeral pull consumer of the subject on stream
// (acknowledging nothing, in memory), deleted afterwards. As the direct
// get, it stops after maxMsgs messages, or after the message that brings
// their subjects, headers and data to MaxBytes, or at the subject's last
// message. The pull asks for no more than those bytes and
// pageMsgOverhead per message: a message that does not fit is read with
// a direct get (oneMore).
func consumerBatch(ctx context.Context, nc *nats.Conn, stream jetstream.Stream, req directGetRequest, maxMsgs int) (directBatch, error) {
	name := stream.CachedInfo().Config.Name
	cfg := jetstream.ConsumerConfig{
		FilterSubject:     req.NextBySubj,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: pageConsumerInactive,
	}
	if req.StartTime != nil {
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, req.StartTime
	} else {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, max(req.Seq, 1)
	}
	cons, err := stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return directBatch{}, fmt.Errorf("consumer of %s: %w", name, err)
	}
	info := cons.CachedInfo()
	defer func() {
		// Bounded by ctx; a consumer left behind goes after
		// pageConsumerInactive.
		if ctx.Err() == nil {
			_ = stream.DeleteConsumer(ctx, info.Name)
		}
	}()
	var out directBatch
	if info.NumPending == 0 {
		return out, nil
	}
	pull := struct {
		Batch    int  `json:"batch"`
		MaxBytes int  `json:"max_bytes,omitempty"`
		NoWait   bool `json:"no_wait"`
	}{Batch: maxMsgs, NoWait: true}
	if req.MaxBytes > 0 {
		pull.MaxBytes = req.MaxBytes + maxMsgs*pageMsgOverhead
	}
	body, err := json.Marshal(pull)
	if err != nil {
		return directBatch{}, fmt.Errorf("encode pull: %w", err)
	}
	// Not a response inbox: a delivery keeps its stream subject, which
	// the connection's response handler would take for the answer to
	// whatever request it waits for.
	inbox := nc.NewInbox()
	ch := make(chan *nats.Msg, maxMsgs+2)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return directBatch{}, fmt.Errorf("consumer of %s: %w", name, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+name+"."+info.Name, inbox, body); err != nil {
		return directBatch{}, fmt.Errorf("consumer of %s: %w", name, err)
	}
	sent := 0
	for len(out.msgs) < maxMsgs {
		var msg *nats.Msg
		select {
		case msg = <-ch:
		case <-ctx.Done():
			return directBatch{}, fmt.Errorf("consumer of %s: %w", name, ctx.Err())
		}
		if msg.Reply == "" {
			status := msg.Header.Get(hdrStatus)
			switch {
			case len(msg.Data) != 0 || status == "":
				return directBatch{}, fmt.Errorf("consumer of %s: a message without metadata", name)
			case status == "404" || status == "408": // no more (no_wait)
				return out, nil
			case status == "409" && msg.Header.Get(hdrStatusDesc) == "Message Size Exceeds MaxBytes":
				return oneMore(ctx, nc, name, req, out)
			default:
				return directBatch{}, fmt.Errorf("consumer of %s: status %s %s", name, status, msg.Header.Get(hdrStatusDesc))
			}
		}
		md, err := msg.Metadata()
		if err != nil {
			return directBatch{}, fmt.Errorf("consumer of %s: %w", name, err)
		}
		out.msgs = append(out.msgs, storedMsg{subject: msg.Subject, seq: md.Sequence.Stream, time: md.Timestamp.UTC(), header: msg.Header, data: msg.Data})
		out.pending = md.NumPending
		if md.NumPending == 0 {
			break
		}
		// What the direct get counts: the message's subject, headers
		// (as stored) and data.
		sent += msg.Size() - len(msg.Reply)
		if req.MaxBytes > 0 && sent >= req.MaxBytes {
			break
		}
	}
	return out, nil
}

// oneMore completes out, what the consumer of a batch direct get req
// delivered before a message larger than its pull's byte bound, with
// that message, read with a direct get. The direct get would have sent
// it and stopped after it: with the subjects, headers and data before
// it below req.MaxBytes, the message does not fit the pull's bound only
// if it takes them to req.MaxBytes.
func oneMore(ctx context.Context, nc *nats.Conn, stream string, req directGetRequest, out directBatch) (directBatch, error) {
	req.Batch = 1
	if n := len(out.msgs); n > 0 {
		req.Seq, req.StartTime = out.msgs[n-1].seq+1, nil
	}
	b, err := directGetBatch(ctx, nc, stream, req, 1)
	if err != nil {
		return directBatch{}, err
	}
	if len(b.msgs) == 0 {
		// A replica that has not stored it yet: the page ends before
		// it, with more to come.
		return out, nil
	}
	out.msgs = append(out.msgs, b.msgs[0])
	out.pending = b.pending
	return out, nil
}
