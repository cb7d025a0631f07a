package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream and KV subjects of a bucket, as nats.go and nats-server spell
// them: the stream behind bucket, the subject of one of its keys, and the
// JetStream API request spoken here.
func kvStream(bucket string) string          { return "KV_" + bucket }
func kvKeyPrefix(bucket string) string       { return "$KV." + bucket + "." }
func kvKeySubject(bucket, key string) string { return kvKeyPrefix(bucket) + key }
func leaderGetSubject(bucket string) string  { return "$JS.API.STREAM.MSG.GET." + kvStream(bucket) }

// maxMultiLast is the most results one multi-last direct get returns (a
// nats-server limit); longer key lists are split.
const maxMultiLast = 1024

// errTooManyResults means a pattern matched more keys than one multi-last
// direct get may return.
var errTooManyResults = errors.New("too many results for one direct get")

// getLast reads the current values of keys (literal or wildcard patterns)
// with JetStream's multi-last direct get: one request answered by the
// stream's subject index, with no consumer to create and no scan of
// unrelated keys, so its cost follows the number of matches, not the size
// of the bucket. Deleted keys are left out. nats.go does not wrap this API
// (nats-server ≥ 2.11), so it is spoken here: a request to
// $JS.API.DIRECT.GET.<stream> with {"multi_last": [...]}, answered by one
// message per match and an end-of-batch status.
func getLast(ctx context.Context, js jetstream.JetStream, bucket string, keys []string) ([]entry, error) {
	var out []entry
	for start := 0; start < len(keys); start += maxMultiLast {
		end := min(start+maxMultiLast, len(keys))
		part, err := getLastBatch(ctx, js.Conn(), bucket, keys[start:end])
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
	}
	return out, nil
}

func getLastBatch(ctx context.Context, nc *nats.Conn, bucket string, keys []string) ([]entry, error) {
	prefix := kvKeyPrefix(bucket)
	filters := make([]string, len(keys))
	for i, k := range keys {
		filters[i] = prefix + k
	}
	b, err := directGetBatch(ctx, nc, kvStream(bucket), directGetRequest{MultiLastOf: filters}, maxMultiLast)
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(b.msgs))
	for _, m := range b.msgs {
		if op := m.header.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			continue
		}
		key, ok := strings.CutPrefix(m.subject, prefix)
		if !ok {
			return nil, fmt.Errorf("direct get %s: unexpected subject %q", bucket, m.subject)
		}
		out = append(out, entry{key: key, value: m.data})
	}
	return out, nil
}

// putAll writes many keys of one bucket with pipelined (asynchronous)
// JetStream publishes and waits for every acknowledgement: one round trip's
// latency instead of one per key. Every key is written or an error is
// returned; a retry rewrites them all (puts are idempotent).
func putAll(ctx context.Context, js jetstream.JetStream, bucket string, values map[string][]byte) error {
	futures := make([]jetstream.PubAckFuture, 0, len(values))
	for key, v := range values {
		f, err := js.PublishAsync(kvKeySubject(bucket, key), v)
		if err != nil {
			return fmt.Errorf("put %s/%s: %w", bucket, key, err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("put %s/%s: %w", bucket, f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("put %s: %w", bucket, ctx.Err())
		}
	}
	return nil
}

// msgGetResponse is JetStream's reply to $JS.API.STREAM.MSG.GET.<stream>.
type msgGetResponse struct {
	Message *struct {
		Subject  string    `json:"subject"`
		Sequence uint64    `json:"seq"`
		Time     time.Time `json:"time"`
		Header   []byte    `json:"hdrs,omitempty"`
		Data     []byte    `json:"data,omitempty"`
	} `json:"message,omitempty"`
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error,omitempty"`
}

// jsErrCodeMessageNotFound is JetStream's error code for "no message found".
const jsErrCodeMessageNotFound = 10037

// getFromLeader reads the current value of one key from the stream
// leader, through $JS.API.STREAM.MSG.GET (nats.go's KV Get uses direct
// gets, which any replica answers). A leader read is never stale, and
// without a leader (quorum lost) it fails instead of answering from a
// replica that may have missed a revocation: admission reads through
// here so that it fails closed. It returns ErrNotFound for a missing or
// deleted key, and the revision.
func getFromLeader(ctx context.Context, nc *nats.Conn, bucket, key string) ([]byte, uint64, error) {
	req, err := json.Marshal(struct {
		LastBySubject string `json:"last_by_subj"`
	}{kvKeySubject(bucket, key)})
	if err != nil {
		return nil, 0, fmt.Errorf("encode leader get: %w", err)
	}
	msg, err := nc.RequestWithContext(ctx, leaderGetSubject(bucket), req)
	if err != nil {
		return nil, 0, fmt.Errorf("leader get %s/%s: %w", bucket, key, err)
	}
	var resp msgGetResponse
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, 0, fmt.Errorf("leader get %s/%s: decode: %w", bucket, key, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == jsErrCodeMessageNotFound {
			return nil, 0, ErrNotFound
		}
		return nil, 0, fmt.Errorf("leader get %s/%s: %d %s", bucket, key, resp.Error.Code, resp.Error.Description)
	}
	if resp.Message == nil {
		return nil, 0, fmt.Errorf("leader get %s/%s: empty reply", bucket, key)
	}
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return nil, 0, fmt.Errorf("leader get %s/%s: headers: %w", bucket, key, err)
		}
		if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
			return nil, 0, ErrNotFound
		}
	}
	return resp.Message.Data, resp.Message.Sequence, nil
}
