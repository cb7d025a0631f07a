package kvstore

import (
	"fmt"
	"log/slog"
	"time"
)

const (
	// DefaultOpTimeout bounds every store call when Config.OpTimeout is zero.
	DefaultOpTimeout = 5 * time.Second
	// DefaultNonceTTL is how long a claimed nonce is remembered: twice the
	// services' default clock skew of two minutes, plus a minute for the
	// clocks of two instances to differ (svc.MinNonceTTL).
	DefaultNonceTTL = 5 * time.Minute
	// MinNonceTTL is the smallest per-key TTL JetStream accepts.
	MinNonceTTL = time.Second
	// DefaultBlobStoreMaxBytes sizes the object store of blobs when
	// Config.BlobStoreMaxBytes is zero and the account has no JetStream
	// storage limit to derive it from.
	DefaultBlobStoreMaxBytes = 1 << 30
	// MinBlobStoreBytes is the smallest object store of blobs.
	MinBlobStoreBytes = 1 << 20
)

// The object store of blobs takes at most blobStoreShareNum /
// blobStoreShareDen of the account's JetStream storage limit, every
// replica counted; the KV buckets (nonce claims, users, rooms) keep the
// rest, however many blobs are uploaded.
const (
	blobStoreShareNum = 3
	blobStoreShareDen = 4
)

// DefaultConfig is a single-node configuration: R1, default timeouts.
func DefaultConfig() Config {
	return Config{Replicas: 1}
}

// Config configures the store.
type Config struct {
	// Replicas of every bucket, 1..5. Required: zero is an error, so a
	// forgotten setting never silently runs a cluster at R1.
	Replicas int
	// OpTimeout bounds every call. Zero means DefaultOpTimeout.
	OpTimeout time.Duration
	// NonceTTL is how long a claimed nonce is kept; it must be at least the
	// request acceptance window (2 × clock skew). Zero means DefaultNonceTTL.
	NonceTTL time.Duration
	// Memory keeps buckets in memory instead of files (tests, benchmarks).
	Memory bool
	// BlobStoreMaxBytes bounds the object store of blobs (BucketBlobs), in
	// bytes of one replica; beyond it puts are refused and nothing else is
	// affected. Zero takes three quarters of the JetStream storage limit of
	// the store's account (for the storage Memory picks, every replica
	// counted: divided by Replicas), or DefaultBlobStoreMaxBytes when the
	// account has none. A value of its own may be smaller, never larger
	// (ErrConfigValidation at Open): the KV buckets keep at least a
	// quarter of the account's storage, so that blobs can never take the
	// room of nonce claims. At least MinBlobStoreBytes.
	BlobStoreMaxBytes int64
	// Logger receives the store's warnings (records that fail validation);
	// nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.OpTimeout == 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.NonceTTL == 0 {
		c.NonceTTL = DefaultNonceTTL
	}
	return c
}

func (c Config) valid() error {
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("%w: replicas must be 1..5, got %d", ErrConfigValidation, c.Replicas)
	}
	if c.OpTimeout < 0 {
		return fmt.Errorf("%w: operation timeout must be positive, got %s", ErrConfigValidation, c.OpTimeout)
	}
	if c.NonceTTL < MinNonceTTL {
		return fmt.Errorf("%w: nonce TTL must be at least %s, got %s", ErrConfigValidation, MinNonceTTL, c.NonceTTL)
	}
	if c.BlobStoreMaxBytes != 0 && c.BlobStoreMaxBytes < MinBlobStoreBytes {
		return fmt.Errorf("%w: blob store max bytes must be at least %d, or 0 to derive it from the account's storage limit, got %d", ErrConfigValidation, MinBlobStoreBytes, c.BlobStoreMaxBytes)
	}
	return nil
}
