package svc

import (
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
// and serves them from the store's object store (kvstore.BucketBlobs).
func newBlobHandlers(h *handlers) *blobHandlers {
	cfg := h.cfg
	if mp := cfg.Conn.MaxPayload(); mp > 0 && mp < maxBlobPutBytes {
		cfg.Logger.Warn("the server's max_payload is below the size of a blob chunk request: blobs cannot reach the services",
			"max_payload", mp, "blob_request_bytes", maxBlobPutBytes)
	}
	return &blobHandlers{handlers: h, objects: h.store.Blobs()}
}

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
	if err := h.putChunk(ctx, chunkName(roomID, blob, req.Index), req.Data); err != nil {
		return subjects.BlobInfo{}, err
	}
	if req.Index < info.Chunks-1 {
		return info, nil
	}
	if err := h.complete(ctx, roomID, blob, req.Size); err != nil {
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

// putChunk stores a chunk, unless the same bytes are stored already (a
// retry, or a second uploader of the same content): rewriting it would
// only race with a completion reading it.
func (h *blobHandlers) putChunk(ctx context.Context, name string, data []byte) error {
	sum := sha256.New()
	sum.Write(data)
	digest := jetstream.GetObjectDigestValue(sum)
	info, err := h.objects.GetInfo(ctx, name)
	switch {
	case err == nil && info.Digest == digest && info.Size == uint64(len(data)):
		return nil
	case err != nil && !errors.Is(err, jetstream.ErrObjectNotFound):
		return unavailable(err)
	}
	if _, err := h.objects.PutBytes(ctx, name, data); err != nil {
		return unavailable(err)
	}
	return nil
}

// complete reads the chunks back in order, streaming them through SHA-256:
// when they hash to the blob's ID the manifest makes the blob readable;
// when they do not, the chunks are deleted and the put refused (400). A
// missing chunk is 409: the uploader puts it, then the last chunk again.
func (h *blobHandlers) complete(ctx context.Context, roomID, blob string, size int64) error {
	chunks := subjects.BlobChunks(size)
	sum := sha256.New()
	var n int64
	for i := range chunks {
		got, err := h.readChunk(ctx, sum, chunkName(roomID, blob, i))
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return conflict(nil, "chunk %d of blob %s is missing: put it, then put the last chunk (%d) again", i, blob, chunks-1)
		}
		if err != nil {
			return unavailable(err)
		}
		n += got
	}
	if n != size || hex.EncodeToString(sum.Sum(nil)) != blob {
		h.deleteChunks(ctx, roomID, blob, chunks)
		return badRequest("the content does not match its hash: blob %s is not stored; hash what you upload with SHA-256 and upload it again", blob)
	}
	_, err := h.objects.Put(ctx, jetstream.ObjectMeta{
		Name: manifestName(roomID, blob),
		Metadata: map[string]string{
			manifestSize:   strconv.FormatInt(size, 10),
			manifestChunks: strconv.Itoa(chunks),
		},
	}, nil)
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// readChunk copies the chunk called name into w and returns its length.
func (h *blobHandlers) readChunk(ctx context.Context, w io.Writer, name string) (int64, error) {
	r, err := h.objects.Get(ctx, name)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n, err := io.Copy(w, r)
	if err != nil {
		return n, fmt.Errorf("read %s: %w", name, err)
	}
	return n, nil
}

// deleteChunks deletes the chunks of a blob that failed its hash. A
// failure leaves garbage, not a blob (there is no manifest), and is only
// logged.
func (h *blobHandlers) deleteChunks(ctx context.Context, roomID, blob string, chunks int) {
	for i := range chunks {
		name := chunkName(roomID, blob, i)
		if err := h.objects.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			h.cfg.Logger.Warn("chunk of a mismatched blob not deleted", "bucket", kvstore.BucketBlobs, "object", name, "err", err)
		}
	}
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
