package subjects

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// Blobs. A blob is content stored in a room through the blobs service and
// named by the SHA-256 of what is stored (BlobID). It travels in chunks of
// BlobChunkSize bytes, so that every request and reply stays well below the
// server's max_payload whatever the blob's size. In an encrypted room the
// client seals the content before it is stored: the blob ID is then the
// hash of the ciphertext, and the services never see the content.
const (
	// BlobChunkSize is the size of every chunk of a blob but the last,
	// which holds the remaining 1..BlobChunkSize bytes (the empty blob is
	// one empty chunk). In JSON a full chunk is about 700 KB of base64,
	// below NATS's default max_payload of 1 MiB.
	BlobChunkSize = 512 << 10
	// MaxBlobChunks bounds the number of chunks of a blob.
	MaxBlobChunks = 2048
	// MaxBlobSize is the largest blob the protocol allows, 1 GiB; a
	// deployment sets its own limit below it (64 MiB by default).
	MaxBlobSize = BlobChunkSize * MaxBlobChunks
	// BlobIDLen is the length of a blob ID: 64 lowercase hex digits.
	BlobIDLen = 2 * sha256.Size
)

// ErrInvalidBlobID reports a value that is not a blob ID (see
// ValidateBlobID). On the control plane it means 400 (CodeBadRequest).
var ErrInvalidBlobID = errors.New("invalid blob id")

// BlobID returns the ID of a blob whose stored content is data: its SHA-256
// in lowercase hex, as sha256sum prints it.
func BlobID(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ValidateBlobID returns an error matching ErrInvalidBlobID unless id is a
// blob ID: exactly BlobIDLen lowercase hex digits. A blob ID is then also a
// safe subject token and object name.
func ValidateBlobID(id string) error {
	if len(id) != BlobIDLen {
		return &invalidError{kind: ErrInvalidBlobID, value: id, reason: fmt.Sprintf("%d characters, want %d lowercase hex digits (SHA-256)", len(id), BlobIDLen)}
	}
	for _, r := range id {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return &invalidError{kind: ErrInvalidBlobID, value: id, reason: fmt.Sprintf("contains %q, want lowercase hex digits", r)}
		}
	}
	return nil
}

// BlobChunks returns the number of chunks of a blob of size bytes: size
// divided by BlobChunkSize, rounded up, and at least one (the empty blob is
// one empty chunk).
func BlobChunks(size int64) int {
	if size <= 0 {
		return 1
	}
	return int((size + BlobChunkSize - 1) / BlobChunkSize)
}

// BlobChunkLen returns the length of chunk index of a blob of size bytes,
// or -1 when the blob has no such chunk.
func BlobChunkLen(size int64, index int) int {
	n := BlobChunks(size)
	switch {
	case size < 0 || index < 0 || index >= n:
		return -1
	case index < n-1:
		return BlobChunkSize
	}
	return int(size - int64(n-1)*BlobChunkSize)
}

// BlobPutRequest is the body of BlobsPut: one chunk of a blob, from a member
// of the room. Reply: BlobInfo.
//
// Chunks may come in any order and more than once (a chunk already stored
// is kept). The put of the last chunk (Index BlobChunks(Size)-1) completes
// the blob: the service checks that every chunk is there and that their
// content, in order, hashes to Blob, and only then makes the blob readable;
// on a mismatch it deletes the chunks and answers 400. So send the last
// chunk last, and send it again to retry a completion. A put to a blob that
// is already complete stores nothing and answers Complete at once: an
// uploader can stop there.
//
// The first chunk reserves the blob's whole size against the uploader's and
// the room's blob quotas (413 over either, or when the blob store is full;
// the message says which). It also claims the blob for its uploader: a
// co-member's put is 409 until the blob is complete, and a chunk sent again
// with other bytes than the first time is 409. An upload not complete
// within the deployment's upload timeout is removed, and its quota freed.
type BlobPutRequest struct {
	// RoomID is the room the blob belongs to.
	RoomID string `json:"room_id"`
	// Blob is the blob's ID: BlobID of its complete content.
	Blob string `json:"blob"`
	// Size is the size of the complete content in bytes. It fixes the
	// number of chunks (BlobChunks) and the length of each (BlobChunkLen),
	// and is checked against the service's limit (413) before anything is
	// stored.
	Size int64 `json:"size"`
	// Index is the chunk's position, from 0.
	Index int `json:"index"`
	// Data is the chunk: BlobChunkLen(Size, Index) bytes.
	Data []byte `json:"data,omitempty"`
}

// BlobInfo is the reply of BlobsPut.
type BlobInfo struct {
	// RoomID is the blob's room.
	RoomID string `json:"room_id"`
	// Blob is the blob's ID.
	Blob string `json:"blob"`
	// Size is the blob's size in bytes.
	Size int64 `json:"size"`
	// Chunks is the blob's number of chunks.
	Chunks int `json:"chunks"`
	// Complete reports that the blob is stored, verified against its ID,
	// and readable with BlobsGet.
	Complete bool `json:"complete"`
}

// BlobGetRequest is the body of BlobsGet: one chunk of a complete blob, for
// a member of the room. Reply: BlobChunk.
type BlobGetRequest struct {
	// RoomID is the blob's room.
	RoomID string `json:"room_id"`
	// Blob is the blob's ID.
	Blob string `json:"blob"`
	// Index is the chunk wanted, from 0; the reply says how many there are.
	Index int `json:"index"`
}

// BlobChunk is the reply of BlobsGet. A reader checks the SHA-256 of the
// chunks, in order, against Blob: the ID, not the service, vouches for the
// content.
type BlobChunk struct {
	// RoomID is the blob's room.
	RoomID string `json:"room_id"`
	// Blob is the blob's ID.
	Blob string `json:"blob"`
	// Index is the chunk's position.
	Index int `json:"index"`
	// Chunks is the blob's number of chunks, BlobChunks(Size).
	Chunks int `json:"chunks"`
	// Size is the blob's size in bytes.
	Size int64 `json:"size"`
	// Data is the chunk: BlobChunkLen(Size, Index) bytes.
	Data []byte `json:"data,omitempty"`
}

// BlobRef names a blob for the members of its room: what a receiver needs
// to fetch and open it. Peers send it as JSON inside a message (which is
// itself sealed in an encrypted room).
type BlobRef struct {
	// RoomID is the blob's room.
	RoomID string `json:"room_id"`
	// Blob is the blob's ID.
	Blob string `json:"blob"`
	// Epoch is the epoch of the room key that sealed the blob; 0 in
	// cleartext rooms. A sealed blob also names its epoch itself.
	Epoch uint64 `json:"epoch,omitempty"`
	// Size is the size of the content in bytes, before sealing.
	Size int64 `json:"size"`
}
