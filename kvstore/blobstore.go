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

// storageSizes are the sizes (MaxBytes, in bytes of one replica) of the
// object store of blobs, the room log and the events stream. -1 means no
// bound of its own.
type storageSizes struct {
	blobs, history, events int64
}

// storageSizes derives the sizes of the object store of blobs, the room
// log and the events stream from cfg and the account's JetStream storage
// limit (see the shares in config.go): cfg's own sizes where it has them,
// else the default shares of the account's limit (the Default… sizes when
// the account has none). Sizes of cfg's own that would leave the KV
// buckets and the events less than a quarter of the account's limit are
// ErrConfigValidation.
func (s *Store) storageSizes(ctx context.Context, js jetstream.JetStream, cfg Config) (storageSizes, error) {
	cctx, cancel := s.bound(ctx)
	defer cancel()
	info, err := js.AccountInfo(cctx)
	if err != nil {
		return storageSizes{}, fmt.Errorf("read the account's JetStream limits: %w", err)
	}
	limit, perReplica := accountStorage(info, cfg.Memory, cfg.Replicas)
	kind := "file"
	if cfg.Memory {
		kind = "memory"
	}
	if limit < 0 {
		out := storageSizes{blobs: cfg.BlobStoreMaxBytes, history: cfg.HistoryMaxBytes, events: -1}
		if out.blobs == 0 {
			out.blobs = DefaultBlobStoreMaxBytes
		}
		if out.history == 0 {
			out.history = DefaultHistoryMaxBytes
		}
		if cfg.BlobStoreMaxBytes == 0 || cfg.HistoryMaxBytes == 0 {
			s.logger.Warn("the account has no JetStream storage limit: the blobs' object store and the room log get the default sizes, and the disk alone bounds the KV buckets and the events",
				"storage", kind, "blob_store_max_bytes", out.blobs, "history_max_bytes", out.history)
		}
		return out, nil
	}
	if cfg.HistoryMaxBytes == -1 {
		return storageSizes{}, fmt.Errorf("%w: a room log without a bound of its own (history max bytes -1) needs an account without a JetStream storage limit; the account's %s storage limit is %d bytes",
			ErrConfigValidation, kind, limit)
	}
	part := func(num int64) int64 { return perReplica / storageShareDen * num }
	shared := part(storageShareMax)
	out := storageSizes{blobs: cfg.BlobStoreMaxBytes, history: cfg.HistoryMaxBytes, events: part(eventsShareNum)}
	switch {
	case out.blobs == 0 && out.history == 0:
		out.blobs, out.history = part(blobStoreShareNum), part(historyShareNum)
	case out.history == 0 && out.blobs <= shared:
		out.history = min(part(historyShareNum), shared-out.blobs)
	case out.blobs == 0 && out.history <= shared:
		out.blobs = min(part(blobStoreShareNum), shared-out.history)
	}
	if out.blobs+out.history > shared {
		return storageSizes{}, fmt.Errorf("%w: a blob store of %d bytes and a room log of %d bytes at %d replicas would leave the KV buckets (nonce claims among them) less than a quarter of the account's JetStream %s storage limit of %d bytes: make them at most %d together, or raise the account's limit",
			ErrConfigValidation, out.blobs, out.history, cfg.Replicas, kind, limit, shared)
	}
	if out.blobs < MinBlobStoreBytes {
		return storageSizes{}, fmt.Errorf("%w: the account's JetStream %s storage limit (%d bytes for %d replicas) leaves the blobs' object store %d bytes, less than %d: raise the account's limit",
			ErrConfigValidation, kind, limit, cfg.Replicas, out.blobs, int64(MinBlobStoreBytes))
	}
	if out.history < MinHistoryBytes {
		return storageSizes{}, fmt.Errorf("%w: the account's JetStream %s storage limit (%d bytes for %d replicas) leaves the room log %d bytes, less than %d: raise the account's limit",
			ErrConfigValidation, kind, limit, cfg.Replicas, out.history, int64(MinHistoryBytes))
	}
	return out, nil
}

// accountStorage returns the account's JetStream limit for the storage
// of streams with replicas (memory or file), and what it leaves one
// replica. A negative limit means none. An account's untiered limit
// counts every replica; a tiered one (per replica count, "R3") counts
// one.
func accountStorage(info *jetstream.AccountInfo, memory bool, replicas int) (limit, perReplica int64) {
	of := func(l jetstream.AccountLimits) int64 {
		if memory {
			return l.MaxMemory
		}
		return l.MaxStore
	}
	tiered := false
	limit = of(info.Limits)
	if len(info.Tiers) > 0 {
		limit = -1
		if t, ok := info.Tiers[fmt.Sprintf("R%d", replicas)]; ok {
			limit, tiered = of(t.Limits), true
		}
	}
	if limit < 0 {
		return limit, 0
	}
	if tiered {
		return limit, limit
	}
	return limit, limit / int64(replicas)
}

// storageError wraps the failure to create or update the stream or
// object store name (what it holds: what) with maxBytes. When the servers
// or the account cannot reserve that much it is ErrConfigValidation too,
// with what to change: retrying does not help.
func storageError(err error, what, name string, maxBytes int64, replicas int) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrStorageResourcesExceeded || apiErr.ErrorCode == jsErrMemoryResourcesExceeded) {
		return fmt.Errorf("%w: open %s: the servers cannot reserve %d bytes at %d replicas for %s (a size is reserved when it is made, within the account's JetStream limit and 75%% of the disk space free when a server starts): lower its size or free space: %w",
			ErrConfigValidation, name, maxBytes, replicas, what, err)
	}
	return fmt.Errorf("open %s: %w", name, err)
}
