package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/subjects"
)

// UploadState is where the upload of a blob stands.
type UploadState string

const (
	// UploadClaimed: the blob is recorded for its uploader, who is not yet
	// admitted within the quotas (an upload whose first put was cut
	// short); the uploader's next put admits it.
	UploadClaimed UploadState = "claimed"
	// UploadAdmitted: the blob's size is counted against the quotas and
	// its uploader's chunks are accepted.
	UploadAdmitted UploadState = "admitted"
	// UploadComplete: every chunk is stored and the whole hashed to the
	// blob's ID.
	UploadComplete UploadState = "complete"
	// UploadExpired: abandoned (or failed its hash) and being removed; no
	// chunk is accepted any more.
	UploadExpired UploadState = "expired"
)

// Upload is the record of a blob of a room in BucketBlobUploads: who
// uploads it, its size and where its upload stands. A blob has one from
// its first chunk on, complete or not: the first uploader claims it
// (create-only), and only the uploader's chunks are accepted until it is
// complete. The sizes of these records are what a room's and an
// uploader's blob usage add up to.
type Upload struct {
	RoomID   string `json:"room_id"`
	Blob     string `json:"blob"`
	Uploader string `json:"uploader"`
	// Size is the blob's stored size in bytes.
	Size int64 `json:"size"`
	// Started is when the first chunk came: the upload expires a fixed
	// time after it.
	Started time.Time   `json:"started"`
	State   UploadState `json:"state"`
}

// PendingUpload is an upload that is not complete, as the janitor of
// abandoned uploads lists it: an entry written before the upload's record
// and deleted once it is complete or removed.
type PendingUpload struct {
	RoomID string `json:"room_id"`
	Blob   string `json:"blob"`
	// Since is when the entry was written.
	Since time.Time `json:"since"`
	// Revision is the entry's revision, so that only the entry read is
	// deleted.
	Revision uint64 `json:"-"`
}

// uploaderEntry is the uploader's index entry of an upload, what its blob
// usage adds up.
type uploaderEntry struct {
	RoomID   string `json:"room_id"`
	Blob     string `json:"blob"`
	Uploader string `json:"uploader"`
	Size     int64  `json:"size"`
}

// chunkEntry is the digest of one chunk of a blob, recorded before the
// chunk is stored and never changed: every write of the chunk must carry
// exactly these bytes.
type chunkEntry struct {
	RoomID string `json:"room_id"`
	Blob   string `json:"blob"`
	Index  int    `json:"index"`
	Digest string `json:"digest"`
}

var (
	_ record = Upload{}
	_ record = PendingUpload{}
	_ record = uploaderEntry{}
	_ record = chunkEntry{}
)

// Keys and key patterns of BucketBlobUploads (see its documentation).
const (
	pendingAll        = "pending.>"
	uploaderKeyPrefix = "user."
)

func uploadKey(roomID, blob string) string { return "blob." + roomID + "." + blob }
func uploadsOfRoom(roomID string) string   { return "blob." + roomID + ".*" }
func uploaderKey(pub, roomID, blob string) string {
	return uploaderKeyPrefix + pub + "." + roomID + "." + blob
}
func uploadsOfUser(pub string) string { return uploaderKeyPrefix + pub + ".*.*" }
func chunkKey(roomID, blob string, index int) string {
	return "chunk." + roomID + "." + blob + "." + strconv.Itoa(index)
}
func chunksOfBlob(roomID, blob string) string { return "chunk." + roomID + "." + blob + ".*" }
func pendingKey(roomID, blob string) string   { return "pending." + roomID + "." + blob }

// validBlobRef checks a room ID and a blob ID (ErrInvalid).
func validBlobRef(roomID, blob string) error {
	if err := validRoomID(roomID); err != nil {
		return err
	}
	if err := subjects.ValidateBlobID(blob); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

func (u Upload) checkKey(key string) error {
	if uploadKey(u.RoomID, u.Blob) != key {
		return fmt.Errorf("the record is of blob %q of room %q", u.Blob, u.RoomID)
	}
	if err := checkUploadFields(u.RoomID, u.Blob, u.Uploader, u.Size); err != nil {
		return err
	}
	switch u.State {
	case UploadClaimed, UploadAdmitted, UploadComplete, UploadExpired:
		return nil
	}
	return fmt.Errorf("unknown upload state %q", u.State)
}

func (p PendingUpload) checkKey(key string) error {
	if pendingKey(p.RoomID, p.Blob) != key {
		return fmt.Errorf("the entry is of blob %q of room %q", p.Blob, p.RoomID)
	}
	return validBlobRef(p.RoomID, p.Blob)
}

func (e uploaderEntry) checkKey(key string) error {
	if uploaderKey(e.Uploader, e.RoomID, e.Blob) != key {
		return fmt.Errorf("the entry is of blob %q of room %q by %q", e.Blob, e.RoomID, e.Uploader)
	}
	return checkUploadFields(e.RoomID, e.Blob, e.Uploader, e.Size)
}

func (c chunkEntry) checkKey(key string) error {
	if chunkKey(c.RoomID, c.Blob, c.Index) != key {
		return fmt.Errorf("the entry is of chunk %d of blob %q of room %q", c.Index, c.Blob, c.RoomID)
	}
	if c.Digest == "" {
		return errors.New("no digest")
	}
	return validBlobRef(c.RoomID, c.Blob)
}

func checkUploadFields(roomID, blob, uploader string, size int64) error {
	if err := validBlobRef(roomID, blob); err != nil {
		return err
	}
	if _, err := subjects.NormalizeUserKey(uploader); err != nil {
		return fmt.Errorf("uploader: %w", err)
	}
	if size < 0 || size > subjects.MaxBlobSize {
		return fmt.Errorf("size %d out of range", size)
	}
	return nil
}

// GetUpload returns the record of a blob of a room and its revision;
// ErrNotFound when the blob has none.
func (s *Store) GetUpload(ctx context.Context, roomID, blob string) (Upload, uint64, error) {
	if err := validBlobRef(roomID, blob); err != nil {
		return Upload{}, 0, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return getRecord[Upload](ctx, s, s.uploads, uploadKey(roomID, blob))
}

// ClaimUpload records u as the upload of its blob, in state
// UploadClaimed, and returns the record's revision: first the pending
// entry by which the janitor finds an abandoned upload, then the record,
// create-only. ErrExists means the blob has a record already (read it
// with GetUpload); the pending entry written then is harmless (the
// janitor drops it).
func (s *Store) ClaimUpload(ctx context.Context, u Upload) (uint64, error) {
	u.State = UploadClaimed
	if err := u.checkKey(uploadKey(u.RoomID, u.Blob)); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	pending := PendingUpload{RoomID: u.RoomID, Blob: u.Blob, Since: u.Started}
	if err := putJSON(ctx, s.uploads, pendingKey(u.RoomID, u.Blob), pending); err != nil {
		return 0, err
	}
	b, err := json.Marshal(u)
	if err != nil {
		return 0, fmt.Errorf("encode %s/%s: %w", BucketBlobUploads, uploadKey(u.RoomID, u.Blob), err)
	}
	rev, err := s.uploads.Create(ctx, uploadKey(u.RoomID, u.Blob), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, ErrExists
	}
	if err != nil {
		return 0, fmt.Errorf("create %s/%s: %w", BucketBlobUploads, uploadKey(u.RoomID, u.Blob), err)
	}
	return rev, nil
}

// IndexUpload writes the uploader's index entry of u, which counts u's
// size in the uploader's blob usage. Writing it again is harmless.
func (s *Store) IndexUpload(ctx context.Context, u Upload) error {
	e := uploaderEntry{RoomID: u.RoomID, Blob: u.Blob, Uploader: u.Uploader, Size: u.Size}
	key := uploaderKey(u.Uploader, u.RoomID, u.Blob)
	if err := e.checkKey(key); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return putJSON(ctx, s.uploads, key, e)
}

// SetUploadState changes the state of u, whose record is at revision rev,
// to state by compare-and-set: ErrConflict when the record changed (or
// is gone). It returns the record and its new revision.
func (s *Store) SetUploadState(ctx context.Context, u Upload, rev uint64, state UploadState) (Upload, uint64, error) {
	u.State = state
	key := uploadKey(u.RoomID, u.Blob)
	if err := u.checkKey(key); err != nil {
		return Upload{}, 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	newRev, err := updateJSON(ctx, s.uploads, key, u, rev)
	if err != nil {
		return Upload{}, 0, err
	}
	return u, newRev, nil
}

// CompleteUpload marks u, whose record is at revision rev, complete by
// compare-and-set (ErrConflict when it changed: expired meanwhile, say),
// then drops its pending entry. A failure to drop the entry is only
// logged: the janitor drops the entries of complete uploads.
func (s *Store) CompleteUpload(ctx context.Context, u Upload, rev uint64) (Upload, error) {
	u, _, err := s.SetUploadState(ctx, u, rev, UploadComplete)
	if err != nil {
		return Upload{}, err
	}
	dctx, cancel := s.bound(ctx)
	defer cancel()
	if err := deleteKey(dctx, s.uploads, pendingKey(u.RoomID, u.Blob)); err != nil {
		s.logger.Warn("pending entry of a complete upload not dropped", "bucket", BucketBlobUploads, "room", u.RoomID, "blob", u.Blob, "err", err)
	}
	return u, nil
}

// BlobUsage is what blobs a user and a room store, in bytes: complete
// blobs and uploads in progress.
type BlobUsage struct {
	// User is the sum of the sizes of the blobs the user uploads or
	// uploaded, in every room.
	User int64
	// Room is the sum of the sizes of the room's blobs, whoever uploaded
	// them.
	Room int64
}

// BlobUsage returns the blob usage of pub and of a room, read in one
// listing of their records: its cost grows with the user's and the
// room's blobs, not with the store's.
func (s *Store) BlobUsage(ctx context.Context, pub, roomID string) (BlobUsage, error) {
	pub, err := normalizeUser(pub)
	if err != nil {
		return BlobUsage{}, err
	}
	if err := validRoomID(roomID); err != nil {
		return BlobUsage{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	entries, err := listFiltered(ctx, s.uploads, []string{uploadsOfUser(pub), uploadsOfRoom(roomID)})
	if err != nil {
		return BlobUsage{}, err
	}
	var u BlobUsage
	for _, e := range entries {
		if strings.HasPrefix(e.key, uploaderKeyPrefix) {
			if v, err := decodeRecord[uploaderEntry](s, BucketBlobUploads, e.key, e.value); err == nil {
				u.User += v.Size
			}
		} else if v, err := decodeRecord[Upload](s, BucketBlobUploads, e.key, e.value); err == nil {
			u.Room += v.Size
		}
	}
	return u, nil
}

// ClaimChunk records digest as the digest of chunk index of a blob,
// unless one is recorded already, and returns the recorded one: digest
// when this call recorded it or an earlier one recorded the same. A chunk
// whose recorded digest differs must not be stored.
func (s *Store) ClaimChunk(ctx context.Context, roomID, blob string, index int, digest string) (string, error) {
	if index < 0 || index >= subjects.MaxBlobChunks {
		return "", fmt.Errorf("%w: chunk index %d out of range", ErrInvalid, index)
	}
	c := chunkEntry{RoomID: roomID, Blob: blob, Index: index, Digest: digest}
	key := chunkKey(roomID, blob, index)
	if err := c.checkKey(key); err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err := createJSON(ctx, s.uploads, key, c)
	if !errors.Is(err, ErrExists) {
		return digest, err
	}
	stored, _, err := getRecord[chunkEntry](ctx, s, s.uploads, key)
	if err != nil {
		return "", err
	}
	return stored.Digest, nil
}

// ChunkDigests returns the recorded digests of the chunks of a blob, by
// index.
func (s *Store) ChunkDigests(ctx context.Context, roomID, blob string) (map[int]string, error) {
	if err := validBlobRef(roomID, blob); err != nil {
		return nil, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	entries, err := listEntries(ctx, s.uploads, chunksOfBlob(roomID, blob))
	if err != nil {
		return nil, err
	}
	out := make(map[int]string, len(entries))
	for _, c := range decodeRecords[chunkEntry](s, BucketBlobUploads, entries) {
		out[c.Index] = c.Digest
	}
	return out, nil
}

// RemoveUpload deletes the records of u, whose record is at revision rev:
// its chunk digests, the uploader's index entry, the record (by
// compare-and-set: ErrConflict when it changed), and last its pending
// entry (only the one it read first, so that a new upload's entry
// stays). The caller deletes the chunks' objects before: a crash at any
// point leaves the record or the pending entry for the janitor to find,
// and repeating it is harmless.
func (s *Store) RemoveUpload(ctx context.Context, u Upload, rev uint64) error {
	if err := validBlobRef(u.RoomID, u.Blob); err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	pending, pendingRev, err := getRecord[PendingUpload](ctx, s, s.uploads, pendingKey(u.RoomID, u.Blob))
	switch {
	case errors.Is(err, ErrNotFound):
		pendingRev = 0
	case err != nil:
		return err
	}
	chunks, err := listEntries(ctx, s.uploads, chunksOfBlob(u.RoomID, u.Blob))
	if err != nil {
		return err
	}
	for _, c := range chunks {
		if err := deleteKey(ctx, s.uploads, c.key); err != nil {
			return err
		}
	}
	if err := deleteKey(ctx, s.uploads, uploaderKey(u.Uploader, u.RoomID, u.Blob)); err != nil {
		return err
	}
	key := uploadKey(u.RoomID, u.Blob)
	if err := s.uploads.Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
		if isRevisionMismatch(err) {
			return ErrConflict
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("delete %s/%s: %w", BucketBlobUploads, key, err)
		}
	}
	if pendingRev == 0 {
		return nil
	}
	pending.Revision = pendingRev
	return s.DropPending(ctx, pending)
}

// PendingUploads lists the pending entries: uploads not known to be
// complete, or removed but for the entry.
func (s *Store) PendingUploads(ctx context.Context) ([]PendingUpload, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	entries, err := listEntries(ctx, s.uploads, pendingAll)
	if err != nil {
		return nil, err
	}
	out := make([]PendingUpload, 0, len(entries))
	for _, e := range entries {
		p, err := decodeRecord[PendingUpload](s, BucketBlobUploads, e.key, e.value)
		if err != nil {
			// Not a pending entry the janitor can act on; nothing reads it.
			continue
		}
		p.Revision = e.rev
		out = append(out, p)
	}
	return out, nil
}

// DropPending deletes a pending entry if it is still at p.Revision (a
// newer one, of an upload started since, stays).
func (s *Store) DropPending(ctx context.Context, p PendingUpload) error {
	if err := validBlobRef(p.RoomID, p.Blob); err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	key := pendingKey(p.RoomID, p.Blob)
	err := s.uploads.Delete(ctx, key, jetstream.LastRevision(p.Revision))
	switch {
	case err == nil, errors.Is(err, jetstream.ErrKeyNotFound), isRevisionMismatch(err):
		return nil
	}
	return fmt.Errorf("delete %s/%s: %w", BucketBlobUploads, key, err)
}

// isRevisionMismatch reports a compare-and-set that lost (see DESIGN.md:
// on replicated buckets ErrKeyExists alone is not enough).
func isRevisionMismatch(err error) bool {
	return errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists)
}
