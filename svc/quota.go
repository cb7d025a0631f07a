package svc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// Blob quotas.
//
// Usage is kept as records, not counters: every blob of a room has an
// upload record (kvstore.Upload) from its first chunk on, and its uploader
// an index entry, in the bucket every instance shares. A room's usage is
// the sum of its records, an uploader's the sum of its entries: reading
// them costs a listing of that room's or that user's blobs, never a scan
// of the object store, and only when an upload starts. A record is
// written before its quota is checked ("reserve, then count"), so that of
// two uploads started at once on two instances at least one sees the
// other: together they never pass a quota (at worst both are refused, and
// a retry passes). No counter can drift by a crash between two writes: an
// abandoned reservation is an upload like any other, which the janitor
// removes when its time runs out. A blob's whole size is reserved by its
// first chunk, so every later chunk is within the quotas by construction;
// each checks that its upload is still admitted, the caller's, and within
// its time.

// admitUpload returns the upload of a blob of a room that the caller may
// put a chunk of, and its record's revision: the blob's record when the
// caller is its uploader (or it is complete, state
// kvstore.UploadComplete), or else a new one, claimed for the caller
// within the quotas (413 beyond, with nothing stored). Another member's
// upload in progress is 409.
func (h *blobHandlers) admitUpload(ctx context.Context, c caller, roomID, blob string, size int64) (kvstore.Upload, uint64, error) {
	up, rev, err := h.store.GetUpload(ctx, roomID, blob)
	if errors.Is(err, kvstore.ErrNotFound) {
		up, rev, err = h.claimUpload(ctx, c, roomID, blob, size)
	}
	if err != nil {
		return kvstore.Upload{}, 0, asError(err)
	}
	if up.State == kvstore.UploadComplete {
		return up, rev, nil
	}
	now := time.Now()
	switch stop := up.Started.Add(h.cfg.BlobUploadTimeout - h.cfg.RequestTimeout); {
	case up.Uploader != c.pub:
		return kvstore.Upload{}, 0, conflict(nil, "blob %s of room %s is being uploaded by another member since %s: only its uploader puts its chunks; it is readable once complete, and removed at %s if abandoned",
			up.Blob, up.RoomID, up.Started.UTC().Format(time.RFC3339), up.Started.Add(h.cfg.BlobUploadTimeout).UTC().Format(time.RFC3339))
	case up.Size != size:
		return kvstore.Upload{}, 0, conflict(nil, "blob %s is being uploaded with a size of %d bytes, not %d: a blob ID names one content", up.Blob, up.Size, size)
	case up.State == kvstore.UploadExpired:
		return kvstore.Upload{}, 0, conflict(nil, "the upload of blob %s ran out of time and is being removed: upload it again in a moment", up.Blob)
	case !now.Before(stop):
		return kvstore.Upload{}, 0, conflict(nil, "the upload of blob %s ran out of time (it must complete within %s of its first chunk) and will be removed: upload it again after %s",
			up.Blob, h.cfg.BlobUploadTimeout, up.Started.Add(h.cfg.BlobUploadTimeout).UTC().Format(time.RFC3339))
	case up.State == kvstore.UploadClaimed:
		return h.reserve(ctx, up, rev)
	}
	return up, rev, nil
}

// claimUpload records a new upload of a blob for the caller, in state
// kvstore.UploadClaimed, after checking that its size fits the caller's
// and the room's quotas and the object store: a blob refused then stores
// nothing. Should another put claim the blob first, its record is
// returned instead.
func (h *blobHandlers) claimUpload(ctx context.Context, c caller, roomID, blob string, size int64) (kvstore.Upload, uint64, error) {
	if err := h.checkQuotas(ctx, c.pub, roomID, size, false); err != nil {
		return kvstore.Upload{}, 0, err
	}
	if err := h.checkStoreSpace(ctx, size); err != nil {
		return kvstore.Upload{}, 0, err
	}
	up := kvstore.Upload{RoomID: roomID, Blob: blob, Uploader: c.pub, Size: size, Started: time.Now().UTC(), State: kvstore.UploadClaimed}
	rev, err := h.store.ClaimUpload(ctx, up)
	if !errors.Is(err, kvstore.ErrExists) {
		return up, rev, err
	}
	// Another put claimed it first.
	up, rev, err = h.store.GetUpload(ctx, roomID, blob)
	if errors.Is(err, kvstore.ErrNotFound) {
		return kvstore.Upload{}, 0, conflict(err, "the upload of blob %s changed during the request: put the chunk again", blob)
	}
	return up, rev, err
}

// reserve admits a claimed upload: the uploader's index entry is written,
// then the quotas are checked again with the upload counted (and every
// upload claimed meanwhile), and the upload is admitted by
// compare-and-set. Over a quota, the upload is removed (413).
func (h *blobHandlers) reserve(ctx context.Context, up kvstore.Upload, rev uint64) (kvstore.Upload, uint64, error) {
	if err := h.store.IndexUpload(ctx, up); err != nil {
		return kvstore.Upload{}, 0, storeError(err, storeMessages{})
	}
	if err := h.checkQuotas(ctx, up.Uploader, up.RoomID, up.Size, true); err != nil {
		if rerr := h.removeUpload(ctx, up, rev); rerr != nil {
			h.cfg.Logger.Warn("upload over a quota not removed (the janitor retries)", "room", up.RoomID, "blob", up.Blob, "err", rerr)
		}
		return kvstore.Upload{}, 0, err
	}
	admitted, newRev, err := h.store.SetUploadState(ctx, up, rev, kvstore.UploadAdmitted)
	if errors.Is(err, kvstore.ErrConflict) {
		// Another put of the uploader's may have admitted it first.
		admitted, newRev, err = h.store.GetUpload(ctx, up.RoomID, up.Blob)
		if err == nil && (admitted.State != kvstore.UploadAdmitted || admitted.Uploader != up.Uploader || !admitted.Started.Equal(up.Started)) {
			err = kvstore.ErrConflict
		}
	}
	if err != nil {
		changed := fmt.Sprintf("the upload of blob %s changed during the request: put the chunk again", up.Blob)
		return kvstore.Upload{}, 0, storeError(err, storeMessages{notFound: changed, notFoundCode: subjects.CodeConflict, conflict: changed})
	}
	return admitted, newRev, nil
}

// checkQuotas refuses (413) a blob of size bytes that would take its
// uploader or its room over their quota. counted says whether the usage
// read already includes the blob (its records are written).
func (h *blobHandlers) checkQuotas(ctx context.Context, pub, roomID string, size int64, counted bool) error {
	userQuota, roomQuota := h.cfg.MaxBlobBytesPerUser, h.cfg.MaxBlobBytesPerRoom
	if userQuota < 0 && roomQuota < 0 {
		return nil
	}
	used, err := h.store.BlobUsage(ctx, pub, roomID)
	if err != nil {
		return storeError(err, storeMessages{})
	}
	if counted {
		used.User -= size
		used.Room -= size
	}
	if userQuota >= 0 && used.User+size > userQuota {
		return newError(subjects.CodeTooLarge, nil, "over your blob quota: you store %s of blobs (uploads in progress included), this blob is %s, and your quota is %s",
			byteCount(used.User), byteCount(size), byteCount(userQuota))
	}
	if roomQuota >= 0 && used.Room+size > roomQuota {
		return newError(subjects.CodeTooLarge, nil, "over the blob quota of room %s: it stores %s of blobs (uploads in progress included), this blob is %s, and its quota is %s",
			roomID, byteCount(used.Room), byteCount(size), byteCount(roomQuota))
	}
	return nil
}

// checkStoreSpace refuses (413) a blob of size bytes that the object
// store has no room left for, its chunks' and manifest's metadata
// included. Uploads started at once may all pass it; the object store's
// own limit then refuses the chunks that do not fit.
func (h *blobHandlers) checkStoreSpace(ctx context.Context, size int64) error {
	st, err := h.objects.Status(ctx)
	if err != nil {
		return unavailable(err)
	}
	need := size + int64(subjects.BlobChunks(size)+1)*objectOverheadBytes
	if used, limit := int64(st.Size()), h.store.BlobsMaxBytes(); used+need > limit {
		return storeFullMessage(used, limit, size, nil)
	}
	return nil
}

// objectOverheadBytes is about what the object store keeps for each
// object beside its data: its metadata message, and the subjects and
// headers of its messages.
const objectOverheadBytes = 1 << 10

// storeFullError is the 413 of a chunk the object store refused for lack
// of room.
func (h *blobHandlers) storeFullError(ctx context.Context, size int64, cause error) error {
	st, err := h.objects.Status(ctx)
	if err != nil {
		return storeFullMessage(-1, h.store.BlobsMaxBytes(), size, cause)
	}
	return storeFullMessage(int64(st.Size()), h.store.BlobsMaxBytes(), size, cause)
}

func storeFullMessage(used, limit, size int64, cause error) *Error {
	if used < 0 {
		return newError(subjects.CodeTooLarge, cause, "the blob store is full (its size is %s): this blob of %s does not fit; an operator can raise the store's size",
			byteCount(limit), byteCount(size))
	}
	return newError(subjects.CodeTooLarge, cause, "the blob store is full: it holds %s of its %s, and this blob of %s does not fit; an operator can raise the store's size",
		byteCount(used), byteCount(limit), byteCount(size))
}

// JetStream's error codes of a write refused for lack of room: the
// stream's MaxBytes (JSStreamStoreFailedF, "maximum bytes exceeded"), the
// account's limit, the servers'.
const (
	jsErrStreamStoreFailed      jetstream.ErrorCode = 10077
	jsErrAccountResources       jetstream.ErrorCode = 10002
	jsErrStorageResources       jetstream.ErrorCode = 10047
	jsErrMemoryResources        jetstream.ErrorCode = 10028
	jsErrInsufficientResources  jetstream.ErrorCode = 10023
	maxBytesExceededDescription                     = "maximum bytes exceeded"
)

// storeFull reports a write that JetStream refused for lack of room.
func storeFull(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case jsErrAccountResources, jsErrStorageResources, jsErrMemoryResources, jsErrInsufficientResources:
		return true
	case jsErrStreamStoreFailed:
		return strings.Contains(apiErr.Description, maxBytesExceededDescription)
	}
	return false
}

// byteCount writes n bytes for humans, exactly and in binary units:
// "3145728 bytes (3.0 MiB)".
func byteCount(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%d bytes (%.1f %ciB)", n, float64(n)/float64(div), "KMGTPE"[exp])
}
