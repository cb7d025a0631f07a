package svc_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

// chunk is the size of a full chunk.
const chunk = subjects.BlobChunkSize

// putBlob uploads content into room as u, chunk by chunk, and checks that
// the last chunk completes it.
func (e *env) putBlob(t testing.TB, u *user, room subjects.RoomInfo, content []byte) string {
	t.Helper()
	blob := subjects.BlobID(content)
	n := subjects.BlobChunks(int64(len(content)))
	for i := range n {
		if got := call[subjects.BlobInfo](t, u, subjects.BlobsPut, putChunk(blob, content, room, i)); got.Complete != (i == n-1) {
			t.Fatalf("put %d of %d: %+v", i, n, got)
		}
	}
	return blob
}

// uploadsSeq is the last sequence of the bucket of upload records: any
// write moves it.
func (e *env) uploadsSeq(t testing.TB) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, kvstore.BucketBlobUploads)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
}

// noUpload fails if a blob of a room has an upload record.
func (e *env) noUpload(t testing.TB, roomID, blob string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if up, _, err := e.store.GetUpload(ctx, roomID, blob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("blob %s has an upload record %+v (%v), want none", blob, up, err)
	}
}

// refusedWithoutTrace checks that a put of a blob nobody uploads, refused
// with code, left the blob store and the upload records as they were.
func (e *env) refusedWithoutTrace(t testing.TB, u *user, req subjects.BlobPutRequest, code int, want ...string) {
	t.Helper()
	e.refusedUnchanged(t, u, req, code, want...)
	e.noUpload(t, req.RoomID, req.Blob)
}

// refusedUnchanged checks that a put refused with code left the blob
// store and the upload records as they were.
func (e *env) refusedUnchanged(t testing.TB, u *user, req subjects.BlobPutRequest, code int, want ...string) {
	t.Helper()
	blobs, uploads := e.blobSeq(t), e.uploadsSeq(t)
	wantError(t, u.request(t, subjects.BlobsPut, req), code, want...)
	if after := e.blobSeq(t); after != blobs {
		t.Errorf("the refused put wrote to the blob store (sequence %d → %d)", blobs, after)
	}
	if after := e.uploadsSeq(t); after != uploads {
		t.Errorf("the refused put wrote upload records (sequence %d → %d)", uploads, after)
	}
}

// TestBlobQuotaPerUser: a user's blobs, in all rooms together, stay within
// its quota: the first chunk of a blob that would pass it is refused with
// 413 saying how much is used, nothing is stored, and the refusal takes
// nothing from the quota. Other users are not affected.
func TestBlobQuotaPerUser(t *testing.T) {
	const quota = 3 * chunk
	e := newEnv(t, withConfig(func(c *svc.Config) {
		c.MaxBlobBytes, c.MaxBlobBytesPerUser, c.MaxBlobBytesPerRoom = 2*chunk, quota, -1
	}))
	room1 := e.createRoom(t, e.alice, subjects.ModeCleartext)
	room2 := e.createRoom(t, e.alice, subjects.ModeCleartext)
	e.invite(t, e.alice, room1, e.bob)
	e.putBlob(t, e.alice, room1, randomBytes(t, 2*chunk))

	second := randomBytes(t, 2*chunk)
	blob := subjects.BlobID(second)
	e.refusedWithoutTrace(t, e.alice, putChunk(blob, second, room2, 0), subjects.CodeTooLarge,
		"over your blob quota", "you store 1048576 bytes (1.0 MiB)", "this blob is 1048576 bytes", "your quota is 1572864 bytes (1.5 MiB)")
	// Every chunk is checked, not only the first.
	e.refusedWithoutTrace(t, e.alice, putChunk(blob, second, room2, 1), subjects.CodeTooLarge, "over your blob quota")

	// Another user has a quota of its own.
	e.putBlob(t, e.bob, room1, second)
	// The refusals took nothing: what is left of alice's quota goes in,
	// to the byte, and not a byte more.
	e.putBlob(t, e.alice, room2, randomBytes(t, chunk))
	e.refusedWithoutTrace(t, e.alice, putChunk(subjects.BlobID([]byte{1}), []byte{1}, room2, 0), subjects.CodeTooLarge,
		"you store 1572864 bytes (1.5 MiB)")
	// A blob stored already costs nothing more: alice's put of bob's blob
	// completes at once.
	if got := call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, second, room1, 0)); !got.Complete {
		t.Errorf("put of a complete blob: %+v", got)
	}
}

// TestBlobQuotaPerRoom: a room's blobs, whoever uploads them, stay within
// its quota, uploads in progress included.
func TestBlobQuotaPerRoom(t *testing.T) {
	const quota = 3 * chunk
	e := newEnv(t, withConfig(func(c *svc.Config) {
		c.MaxBlobBytes, c.MaxBlobBytesPerUser, c.MaxBlobBytesPerRoom = 2*chunk, -1, quota
	}))
	room := e.createRoom(t, e.alice, subjects.ModeCleartext)
	e.invite(t, e.alice, room, e.bob)
	// Alice's upload in progress holds its whole size.
	first := randomBytes(t, 2*chunk)
	call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(subjects.BlobID(first), first, room, 0))

	second := randomBytes(t, 2*chunk)
	e.refusedWithoutTrace(t, e.bob, putChunk(subjects.BlobID(second), second, room, 0), subjects.CodeTooLarge,
		"over the blob quota of room "+room.RoomID, "it stores 1048576 bytes (1.0 MiB) of blobs (uploads in progress included)", "its quota is 1572864 bytes (1.5 MiB)")
	// The same blob goes into another room, and what is left of the room's
	// quota takes a smaller one.
	e.putBlob(t, e.bob, e.createRoom(t, e.bob, subjects.ModeCleartext), second)
	e.putBlob(t, e.bob, room, randomBytes(t, chunk))
	// Alice completes hers: its place was reserved.
	if got := call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(subjects.BlobID(first), first, room, 1)); !got.Complete {
		t.Fatalf("last chunk of a reserved blob: %+v", got)
	}
}

// TestBlobQuotaConcurrentStarts: uploads started at once on two instances
// of the services, all by one user, never take it over its quota: each
// reserves its size before it counts the others'.
func TestBlobQuotaConcurrentStarts(t *testing.T) {
	const (
		quota   = 2 * 2 * chunk // two blobs of two chunks
		uploads = 8
	)
	e := newEnv(t, withConfig(func(c *svc.Config) {
		c.MaxBlobBytes, c.MaxBlobBytesPerUser, c.MaxBlobBytesPerRoom = 2*chunk, quota, -1
	}))
	e.secondInstance(t)
	room := e.createRoom(t, e.alice, subjects.ModeCleartext)
	msgs := make([]*nats.Msg, uploads)
	for i := range msgs {
		content := randomBytes(t, 2*chunk)
		msgs[i] = e.alice.msg(t, subjects.BlobsPut, putChunk(subjects.BlobID(content), content, room, 0))
	}
	replies := make([]*nats.Msg, uploads)
	errs := make([]error, uploads)
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() { replies[i], errs[i] = e.alice.nc.RequestMsg(m, requestTimeout) })
	}
	wg.Wait()
	admitted := 0
	for i, r := range replies {
		if errs[i] != nil {
			t.Fatalf("put %d: %v", i, errs[i])
		}
		switch code := r.Header.Get(micro.ErrorCodeHeader); code {
		case "":
			admitted++
		case strconv.Itoa(subjects.CodeTooLarge):
			wantError(t, r, subjects.CodeTooLarge, "over your blob quota")
		default:
			t.Errorf("put %d: %s %q", i, code, r.Header.Get(micro.ErrorHeader))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	used, err := e.store.BlobUsage(ctx, e.alice.pub, room.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	if admitted > 2 || used.User != int64(admitted)*2*chunk || used.Room != used.User {
		t.Errorf("%d uploads admitted, %d bytes counted, with a quota of %d for blobs of %d", admitted, used, quota, 2*chunk)
	}
	if admitted == 0 {
		t.Log("every upload refused: each counted the others (a retry passes)")
	}
}

// TestBlobQuotaConfig: the quotas must hold the largest blob, and an
// upload must have time for more than one request.
func TestBlobQuotaConfig(t *testing.T) {
	e := newEnv(t)
	base := e.cfg
	for _, tc := range []struct {
		name   string
		change func(*svc.Config)
	}{
		{"user quota below the largest blob", func(c *svc.Config) { c.MaxBlobBytes, c.MaxBlobBytesPerUser = 2*chunk, 2*chunk-1 }},
		{"room quota below the largest blob", func(c *svc.Config) { c.MaxBlobBytes, c.MaxBlobBytesPerRoom = 2*chunk, chunk }},
		{"upload timeout below two requests", func(c *svc.Config) { c.RequestTimeout, c.BlobUploadTimeout = 10e9, 19e9 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.change(&cfg)
			s, err := svc.Start(context.Background(), cfg)
			if !errors.Is(err, svc.ErrConfigValidation) {
				if s != nil {
					_ = s.Stop()
				}
				t.Fatalf("Start = %v, want ErrConfigValidation", err)
			}
		})
	}
	// No limit at all is a choice.
	cfg := base
	cfg.MaxBlobBytesPerUser, cfg.MaxBlobBytesPerRoom = -1, -1
	e.start(t, cfg)
}
