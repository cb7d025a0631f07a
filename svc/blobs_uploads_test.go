package svc_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/nodetest"
)

// chunkBytes returns the stored bytes of chunk i of a blob.
func (e *env) chunkBytes(t testing.TB, roomID, blob string, i int) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	data, err := e.blobStore(t).GetBytes(ctx, nodetest.ChunkObject(roomID, blob, i))
	if err != nil {
		t.Fatalf("chunk %d of blob %s: %v", i, blob, err)
	}
	return data
}

// TestBlobChunksCreateOnly: a co-member cannot overwrite the chunks of
// another's upload, nor complete it with content of its own; the uploader
// cannot rewrite a chunk either; and a complete blob takes no write.
func TestBlobChunksCreateOnly(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeCleartext)
	e.invite(t, e.alice, room, e.bob)
	content := randomBytes(t, 2*chunk+1)
	blob := subjects.BlobID(content)
	call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, 0))
	forged := bytes.Clone(content)
	for i := range forged {
		forged[i] ^= 0xff
	}

	for i := range 3 {
		e.refusedUnchanged(t, e.bob, putChunk(blob, forged, room, i), subjects.CodeConflict,
			"blob "+blob+" of room "+room.RoomID+" is being uploaded by another member", "only its uploader puts its chunks")
	}
	e.refusedUnchanged(t, e.alice, putChunk(blob, forged, room, 0), subjects.CodeConflict,
		"chunk 0 of blob "+blob+" is stored already with other content", "never rewritten")
	// The same bytes again are a retry: accepted, nothing written.
	e.refusedUnchanged(t, e.bob, putChunk(blob, content, room, 0), subjects.CodeConflict, "another member")
	before := e.blobSeq(t)
	call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, 0))
	if after := e.blobSeq(t); after != before {
		t.Errorf("a retried chunk was written again (sequence %d → %d)", before, after)
	}
	if got := e.chunkBytes(t, room.RoomID, blob, 0); !bytes.Equal(got, chunksOf(content)[0]) {
		t.Fatal("chunk 0 changed")
	}

	e.putBlob(t, e.alice, room, content)
	before = e.blobSeq(t)
	for i := range 3 {
		if got := call[subjects.BlobInfo](t, e.bob, subjects.BlobsPut, putChunk(blob, forged, room, i)); !got.Complete {
			t.Fatalf("put %d to a complete blob: %+v", i, got)
		}
	}
	if after := e.blobSeq(t); after != before {
		t.Errorf("puts to a complete blob wrote (sequence %d → %d)", before, after)
	}
	var read []byte
	for i := range 3 {
		read = append(read, call[subjects.BlobChunk](t, e.bob, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: blob, Index: i}).Data...)
	}
	if !bytes.Equal(read, content) {
		t.Error("the blob does not read back as its uploader put it")
	}
}

// TestBlobJanitor: an upload whose last chunk never comes is removed once
// its time runs out, chunks and records, by every instance's janitor at
// once, and its place in the quota is freed; the blob can then be
// uploaded afresh.
func TestBlobJanitor(t *testing.T) {
	const (
		requestTimeout = 2 * time.Second
		uploadTimeout  = 2 * requestTimeout
	)
	e := newEnv(t, withConfig(func(c *svc.Config) {
		c.MaxBlobBytes, c.MaxBlobBytesPerUser, c.MaxBlobBytesPerRoom = 2*chunk, 3*chunk, -1
		c.RequestTimeout, c.BlobUploadTimeout = requestTimeout, uploadTimeout
	}))
	room := e.createRoom(t, e.alice, subjects.ModeCleartext)
	e.invite(t, e.alice, room, e.bob)
	abandoned := randomBytes(t, 2*chunk)
	blob := subjects.BlobID(abandoned)
	removed := e.watchUploadGone(t, room.RoomID, blob)
	call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, abandoned, room, 0))

	// The upload in progress holds its place in alice's quota.
	next := randomBytes(t, 2*chunk)
	e.refusedWithoutTrace(t, e.alice, putChunk(subjects.BlobID(next), next, room, 0), subjects.CodeTooLarge, "over your blob quota", "uploads in progress included")

	// Two janitors, as two instances run, sweep the same uploads.
	for range 2 {
		t.Cleanup(svc.StartBlobJanitor(e.cfg))
	}
	select {
	case <-removed:
	case <-time.After(uploadTimeout + time.Minute):
		t.Fatalf("the abandoned upload was not removed within %s of its timeout", time.Minute)
	}
	if e.objectExists(t, nodetest.ChunkObject(room.RoomID, blob, 0)) {
		t.Error("the chunk of the removed upload is still stored")
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if used, err := e.store.BlobUsage(ctx, e.alice.pub, room.RoomID); err != nil || used.User != 0 || used.Room != 0 {
		t.Errorf("alice's blob usage after the removal: %d (%v), want 0", used, err)
	}
	e.putBlob(t, e.alice, room, next)
	e.putBlob(t, e.bob, room, abandoned)
}

// watchUploadGone returns a channel closed once the upload record of a
// blob, written after this call, is deleted: it follows the bucket of
// upload records and reads the record on every change.
func (e *env) watchUploadGone(t testing.TB, roomID, blob string) <-chan struct{} {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	kv, err := e.js.KeyValue(ctx, kvstore.BucketBlobUploads)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	gone := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		_ = w.Stop()
		<-done
	})
	go func() {
		defer close(done)
		seen := false
		for {
			select {
			case <-ctx.Done():
				return
			case u := <-w.Updates():
				if u == nil {
					continue
				}
				_, _, err := e.store.GetUpload(ctx, roomID, blob)
				switch {
				case err == nil:
					seen = true
				case seen && errors.Is(err, kvstore.ErrNotFound):
					close(gone)
					return
				}
			}
		}
	}()
	return gone
}

// TestBlobUploadRunsOut: an upload takes no chunk in the last request
// timeout of its time, so that none is being written when it is
// removed.
func TestBlobUploadRunsOut(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeCleartext)
	e.invite(t, e.alice, room, e.bob)
	content := randomBytes(t, 2*chunk)
	blob := subjects.BlobID(content)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	started := time.Now().Add(-svc.DefaultBlobUploadTimeout + svc.DefaultRequestTimeout/2)
	if _, err := e.store.ClaimUpload(ctx, kvstore.Upload{RoomID: room.RoomID, Blob: blob, Uploader: e.alice.pub, Size: int64(len(content)), Started: started}); err != nil {
		t.Fatal(err)
	}
	e.refusedUnchanged(t, e.alice, putChunk(blob, content, room, 0), subjects.CodeConflict, "ran out of time", "within 1h0m0s of its first chunk")
	e.refusedUnchanged(t, e.bob, putChunk(blob, content, room, 0), subjects.CodeConflict, "another member")
}
