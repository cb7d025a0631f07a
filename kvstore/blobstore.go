package kvstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// JetStream's error codes for a stream whose MaxBytes the account's or
// the servers' storage cannot reserve (nats-server's
// JSStorageResourcesExceededErr and JSMemoryResourcesExceededErr);
// nats.go names no constants for them.
const (
	jsErrStorageResourcesExceeded jetstream.ErrorCode = 10047
	jsErrMemoryResourcesExceeded  jetstream.ErrorCode = 10028
)

// blobStoreSize is the MaxBytes of the object store of blobs, in bytes of
// one replica: cfg.BlobStoreMaxBytes, or else three quarters of the
// account's JetStream storage limit (DefaultBlobStoreMaxBytes when the
// account has none). A size of cfg's own that would leave the KV buckets
// less than a quarter of the account's limit is ErrConfigValidation.
func (s *Store) blobStoreSize(ctx context.Context, js jetstream.JetStream, cfg Config) (int64, error) {
	cctx, cancel := s.bound(ctx)
	defer cancel()
	info, err := js.AccountInfo(cctx)
	if err != nil {
		return 0, fmt.Errorf("read the account's JetStream limits: %w", err)
	}
	limit, share := blobShare(info, cfg.Memory, cfg.Replicas)
	kind := "file"
	if cfg.Memory {
		kind = "memory"
	}
	switch {
	case limit < 0 && cfg.BlobStoreMaxBytes == 0:
		s.logger.Warn("the account has no JetStream storage limit: the blobs' object store gets the default size, and the disk alone bounds the KV buckets",
			"storage", kind, "blob_store_max_bytes", DefaultBlobStoreMaxBytes)
		return DefaultBlobStoreMaxBytes, nil
	case limit < 0:
		return cfg.BlobStoreMaxBytes, nil
	case share < MinBlobStoreBytes:
		return 0, fmt.Errorf("%w: the account's JetStream %s storage limit (%d bytes for %d replicas) leaves the blobs' object store %d bytes, less than %d: raise the account's limit",
			ErrConfigValidation, kind, limit, cfg.Replicas, share, int64(MinBlobStoreBytes))
	case cfg.BlobStoreMaxBytes == 0:
		return share, nil
	case cfg.BlobStoreMaxBytes > share:
		return 0, fmt.Errorf("%w: a blob store of %d bytes at %d replicas would leave the KV buckets (nonce claims among them) less than a quarter of the account's JetStream %s storage limit of %d bytes: make it at most %d, or raise the account's limit",
			ErrConfigValidation, cfg.BlobStoreMaxBytes, cfg.Replicas, kind, limit, share)
	}
	return cfg.BlobStoreMaxBytes, nil
}

// blobShare returns the account's JetStream limit for the storage of
// buckets with replicas (memory or file), and the most of it the object
// store of blobs may take, in bytes of one replica. A negative limit means
// none. An account's untiered limit counts every replica; a tiered one
// (per replica count, "R3") counts one.
func blobShare(info *jetstream.AccountInfo, memory bool, replicas int) (limit, share int64) {
	of := func(l jetstream.AccountLimits) int64 {
		if memory {
			return l.MaxMemory
		}
		return l.MaxStore
	}
	perReplica := false
	limit = of(info.Limits)
	if len(info.Tiers) > 0 {
		limit = -1
		if t, ok := info.Tiers[fmt.Sprintf("R%d", replicas)]; ok {
			limit, perReplica = of(t.Limits), true
		}
	}
	if limit < 0 {
		return limit, 0
	}
	share = limit / blobStoreShareDen * blobStoreShareNum
	if !perReplica {
		share /= int64(replicas)
	}
	return limit, share
}

// blobStoreError wraps the failure to create or update the object store
// of blobs with maxBytes. When the servers or the account cannot reserve
// that much it is ErrConfigValidation too, with what to change: retrying
// does not help.
func blobStoreError(err error, maxBytes int64, replicas int) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrStorageResourcesExceeded || apiErr.ErrorCode == jsErrMemoryResourcesExceeded) {
		return fmt.Errorf("%w: open object store %s: the servers cannot reserve %d bytes at %d replicas for blobs (an object store's size is reserved when it is made, within the account's JetStream limit and 75%% of the disk space free when a server starts): lower the blob store's size or free space: %w",
			ErrConfigValidation, BucketBlobs, maxBytes, replicas, err)
	}
	return fmt.Errorf("open object store %s: %w", BucketBlobs, err)
}
