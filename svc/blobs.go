package svc

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// Manifest metadata keys.
const (
	manifestSize   = "size"
	manifestChunks = "chunks"
)

// maxBlobPutBytes is the largest body of a valid blobs.put request: a full
// chunk in base64 and the other fields (room ID, blob ID, size, index and
// the JSON around them, well under 1 KiB). blobs.put uses the bundle limit,
// which must be at least this.
const maxBlobPutBytes = (subjects.BlobChunkSize+2)/3*4 + 1<<10

// blobHandlers are the operations of the blobs service.
type blobHandlers struct {
	*handlers
	objects jetstream.ObjectStore
}

// newBlobHandlers checks that blob chunk requests can reach the service
// and serves them from the store's object store (kvstore.BucketBlobs),
// with the records of uploads in kvstore.BucketBlobUploads.
func newBlobHandlers(h *handlers) *blobHandlers {
	cfg := h.cfg
	if mp := cfg.Conn.MaxPayload(); mp > 0 && mp < maxBlobPutBytes {
		cfg.Logger.Warn("the server's max_payload is below the size of a blob chunk request: blobs cannot reach the services",
			"max_payload", mp, "blob_request_bytes", maxBlobPutBytes)
	}
	return &blobHandlers{handlers: h, objects: h.store.Blobs()}
}

// put stores one chunk of a blob for a member of its room. The first
// chunk of a blob claims it for the caller within the quotas
// (admitUpload); every chunk is then checked against that claim, stored
// create-only (putChunk), and the last one completes the blob (complete).
func (h *blobHandlers) put(ctx context.Context, c caller, req *subjects.BlobPutRequest) (subjects.BlobInfo, error) {
	roomID, err := parseRoomID(req.RoomID)
	if err != nil {
		return subjects.BlobInfo{}, err
	}
	blob, err := parseBlobID(req.Blob)
	if err != nil {
		return subjects.BlobInfo{}, err
	}
	if err := h.checkChunk(req); err != nil {
		return subjects.BlobInfo{}, err
	}
	if _, err := h.memberRoom(ctx, c, roomID); err != nil {
		return subjects.BlobInfo{}, err
	}
	info := subjects.BlobInfo{RoomID: roomID, Blob: blob, Size: req.Size, Chunks: subjects.BlobChunks(req.Size)}
	switch m, err := h.manifest(ctx, roomID, blob); {
	case err == nil:
		// Complete already (the same content, put before): keep it as is.
		info.Size, info.Chunks, info.Complete = m.size, m.chunks, true
		return info, nil
	case !errors.Is(err, jetstream.ErrObjectNotFound):
		return subjects.BlobInfo{}, unavailable(err)
	}
	up, rev, err := h.admitUpload(ctx, c, roomID, blob, req.Size)
	if err != nil {
		return subjects.BlobInfo{}, err
	}
	if up.State == kvstore.UploadComplete {
		// Verified and committed, but the manifest was not written (a
		// crash, a lost reply): write it now.
		if err := h.writeManifest(ctx, roomID, blob, up.Size); err != nil {
			return subjects.BlobInfo{}, err
		}
		info.Complete = true
		return info, nil
	}
	if err := h.putChunk(ctx, up, req.Index, req.Data); err != nil {
		return subjects.BlobInfo{}, err
	}
	if req.Index < info.Chunks-1 {
		return info, nil
	}
	if err := h.complete(ctx, up, rev); err != nil {
		return subjects.BlobInfo{}, err
	}
	info.Complete = true
	return info, nil
}

// checkChunk checks the size, index and length of a chunk against the
// limits and against each other, before anything is read or stored.
func (h *blobHandlers) checkChunk(req *subjects.BlobPutRequest) error {
	limit := h.cfg.MaxBlobBytes
	switch {
	case req.Size < 0:
		return badRequest("size must not be negative, got %d", req.Size)
	case req.Size > limit:
		return newError(subjects.CodeTooLarge, nil, "the blob is %d bytes, over the limit of %d bytes", req.Size, limit)
	case len(req.Data) > subjects.BlobChunkSize:
		return newError(subjects.CodeTooLarge, nil, "the chunk is %d bytes, over the chunk size of %d bytes", len(req.Data), subjects.BlobChunkSize)
	}
	n := subjects.BlobChunks(req.Size)
	if req.Index < 0 || req.Index >= n {
		return badRequest("index %d is out of range: a blob of %d bytes has chunks 0..%d", req.Index, req.Size, n-1)
	}
	if want := subjects.BlobChunkLen(req.Size, req.Index); len(req.Data) != want {
		return badRequest("chunk %d of a blob of %d bytes must be %d bytes (chunks are %d bytes but the last), got %d",
			req.Index, req.Size, want, subjects.BlobChunkSize, len(req.Data))
	}
	return nil
}

// putChunk stores chunk index of the upload up, create-only: its digest
// is recorded first (kvstore.Store.ClaimChunk), once, and only those
// bytes are ever written under its name. The same bytes again (a retry)
// store nothing; other bytes are refused (409), so that no chunk changes
// under a completion that read it, nor after.
func (h *blobHandlers) putChunk(ctx context.Context, up kvstore.Upload, index int, data []byte) error {
	digest := digestOf(data)
	recorded, err := h.store.ClaimChunk(ctx, up.RoomID, up.Blob, index, digest)
	if err != nil {
		return storeError(err, storeMessages{})
	}
	if recorded != digest {
		return conflict(nil, "chunk %d of blob %s is stored already with other content, and a chunk is never rewritten: if the content changed, upload it under its new ID", index, up.Blob)
	}
	name := chunkName(up.RoomID, up.Blob, index)
	info, err := h.objects.GetInfo(ctx, name)
	switch {
	case err == nil && info.Digest == digest && info.Size == uint64(len(data)):
		return nil
	case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound):
		return unavailable(err)
	}
	// Absent, half-written, or left by an upload removed before: these
	// bytes are the recorded ones.
	if _, err := h.objects.Put(ctx, jetstream.ObjectMeta{Name: name}, bytes.NewReader(data)); err != nil {
		if storeFull(err) {
			return h.storeFullError(ctx, up.Size, err)
		}
		return unavailable(err)
	}
	return nil
}

// complete reads the chunks of the upload up (at revision rev) back in
// order, each checked against its recorded digest, streaming them through
// SHA-256: when they hash to the blob's ID, the upload is committed
// complete (compare-and-set, so that it cannot also expire) and the
// manifest makes the blob readable; when they do not, the upload is
// removed and the put refused (400). A missing chunk is 409: the uploader
// puts it, then the last chunk again.
func (h *blobHandlers) complete(ctx context.Context, up kvstore.Upload, rev uint64) error {
	chunks := subjects.BlobChunks(up.Size)
	digests, err := h.store.ChunkDigests(ctx, up.RoomID, up.Blob)
	if err != nil {
		return storeError(err, storeMessages{})
	}
	sum := sha256.New()
	var n int64
	for i := range chunks {
		missing := conflict(nil, "chunk %d of blob %s is missing: put it, then put the last chunk (%d) again", i, up.Blob, chunks-1)
		want, ok := digests[i]
		if !ok {
			return missing
		}
		got, digest, err := h.readChunk(ctx, sum, chunkName(up.RoomID, up.Blob, i))
		switch {
		case errors.Is(err, jetstream.ErrObjectNotFound), err == nil && digest != want:
			// Recorded but not (or not yet) stored as recorded.
			return missing
		case err != nil:
			return unavailable(err)
		}
		n += got
	}
	if n != up.Size || hex.EncodeToString(sum.Sum(nil)) != up.Blob {
		if err := h.removeUpload(ctx, up, rev); err != nil {
			h.cfg.Logger.Warn("upload of a mismatched blob not removed (the janitor retries)", "room", up.RoomID, "blob", up.Blob, "err", err)
		}
		return badRequest("the content does not match its hash: blob %s is not stored; hash what you upload with SHA-256 and upload it again", up.Blob)
	}
	if _, err := h.store.CompleteUpload(ctx, up, rev); err != nil {
		return storeError(err, storeMessages{conflict: fmt.Sprintf("the upload of blob %s ran out of time as it completed and is being removed: upload it again", up.Blob)})
	}
	return h.writeManifest(ctx, up.RoomID, up.Blob, up.Size)
}

// writeManifest writes the manifest of a verified blob, which makes it
// readable.
func (h *blobHandlers) writeManifest(ctx context.Context, roomID, blob string, size int64) error {
	_, err := h.objects.Put(ctx, jetstream.ObjectMeta{
		Name: manifestName(roomID, blob),
		Metadata: map[string]string{
			manifestSize:   strconv.FormatInt(size, 10),
			manifestChunks: strconv.Itoa(subjects.BlobChunks(size)),
		},
	}, nil)
	if err != nil {
		if storeFull(err) {
			return h.storeFullError(ctx, size, err)
		}
		return unavailable(err)
	}
	return nil
}

// readChunk copies the chunk called name into w and returns its length
// and its digest as the object store recorded it (which the object store
// checks the bytes read against).
func (h *blobHandlers) readChunk(ctx context.Context, w io.Writer, name string) (int64, string, error) {
	r, err := h.objects.Get(ctx, name)
	if err != nil {
		return 0, "", err
	}
	defer r.Close()
	info, err := r.Info()
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", name, err)
	}
	n, err := io.Copy(w, r)
	if err != nil {
		return n, "", fmt.Errorf("read %s: %w", name, err)
	}
	return n, info.Digest, nil
}

// removeUpload removes the upload up (at revision rev): first it is
// marked expired, so that no chunk is accepted and it cannot complete,
// then its chunks' objects are deleted, then its records
// (kvstore.Store.RemoveUpload), which frees its place in the quotas. Any
// instance may do it, any number of times; a failure leaves the rest to
// the janitor.
func (h *blobHandlers) removeUpload(ctx context.Context, up kvstore.Upload, rev uint64) error {
	if up.State != kvstore.UploadExpired {
		expired, newRev, err := h.store.SetUploadState(ctx, up, rev, kvstore.UploadExpired)
		if err != nil {
			return fmt.Errorf("expire upload of blob %s of room %s: %w", up.Blob, up.RoomID, err)
		}
		up, rev = expired, newRev
	}
	for i := range subjects.BlobChunks(up.Size) {
		name := chunkName(up.RoomID, up.Blob, i)
		if err := h.objects.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("delete %s: %w", name, err)
		}
	}
	if err := h.store.RemoveUpload(ctx, up, rev); err != nil {
		return fmt.Errorf("remove upload of blob %s of room %s: %w", up.Blob, up.RoomID, err)
	}
	return nil
}

func (h *blobHandlers) get(ctx context.Context, c caller, req *subjects.BlobGetRequest) (subjects.BlobChunk, error) {
	roomID, err := parseRoomID(req.RoomID)
	if err != nil {
		return subjects.BlobChunk{}, err
	}
	blob, err := parseBlobID(req.Blob)
	if err != nil {
		return subjects.BlobChunk{}, err
	}
	if req.Index < 0 {
		return subjects.BlobChunk{}, badRequest("index must not be negative, got %d", req.Index)
	}
	if _, err := h.memberRoom(ctx, c, roomID); err != nil {
		return subjects.BlobChunk{}, err
	}
	m, err := h.manifest(ctx, roomID, blob)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return subjects.BlobChunk{}, notFound("blob %s not found in room %s (or its upload is not complete)", blob, roomID)
	}
	if err != nil {
		return subjects.BlobChunk{}, unavailable(err)
	}
	if req.Index < 0 || req.Index >= m.chunks {
		return subjects.BlobChunk{}, badRequest("index %d is out of range: blob %s has chunks 0..%d", req.Index, blob, m.chunks-1)
	}
	data, err := h.objects.GetBytes(ctx, chunkName(roomID, blob, req.Index))
	if err != nil {
		// A complete blob has every chunk: anything else is the store's
		// failure (or an operator's deletion).
		return subjects.BlobChunk{}, unavailable(err)
	}
	return subjects.BlobChunk{RoomID: roomID, Blob: blob, Index: req.Index, Chunks: m.chunks, Size: m.size, Data: data}, nil
}

// manifest is what the manifest of a complete blob records.
type manifest struct {
	size   int64
	chunks int
}

// manifest reads the manifest of a blob; jetstream.ErrObjectNotFound means
// the blob is not complete (or does not exist).
func (h *blobHandlers) manifest(ctx context.Context, roomID, blob string) (manifest, error) {
	info, err := h.objects.GetInfo(ctx, manifestName(roomID, blob))
	if err != nil {
		return manifest{}, err
	}
	size, serr := strconv.ParseInt(info.Metadata[manifestSize], 10, 64)
	chunks, cerr := strconv.Atoi(info.Metadata[manifestChunks])
	if serr != nil || cerr != nil || size < 0 || size > subjects.MaxBlobSize || chunks != subjects.BlobChunks(size) {
		return manifest{}, fmt.Errorf("manifest %s: malformed metadata %v", info.Name, info.Metadata)
	}
	return manifest{size: size, chunks: chunks}, nil
}

// digestOf is the digest the object store records for data.
func digestOf(data []byte) string {
	sum := sha256.New()
	sum.Write(data)
	return jetstream.GetObjectDigestValue(sum)
}

// chunkName is the object of chunk index of a blob.
func chunkName(roomID, blob string, index int) string {
	return manifestName(roomID, blob) + "/" + strconv.Itoa(index)
}

// manifestName is the object of a blob's manifest.
func manifestName(roomID, blob string) string { return roomID + "/" + blob }

// parseBlobID validates the blob field.
func parseBlobID(id string) (string, error) {
	if id == "" {
		return "", badRequest("blob is required: the SHA-256 of the content in lowercase hex")
	}
	if err := subjects.ValidateBlobID(id); err != nil {
		return "", newError(subjects.CodeBadRequest, err, "blob: %s", err.Error())
	}
	return id, nil
}

// unavailable is the 503 of a failed object store call (fail closed).
func unavailable(cause error) *Error {
	return newError(subjects.CodeUnavailable, cause, msgUnavailable)
}
