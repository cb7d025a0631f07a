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
	// DefaultHistoryMaxAge is how long the room log keeps a frame when
	// Config.HistoryMaxAge is zero: the stream's MaxAge.
	DefaultHistoryMaxAge = 30 * 24 * time.Hour
	// MinHistoryMaxAge is the shortest Config.HistoryMaxAge.
	MinHistoryMaxAge = time.Minute
	// MinFrameMaxAge is the shortest maximum age of a room's own
	// (AppendFrame's maxAge): JetStream's smallest per-message TTL.
	MinFrameMaxAge = time.Second
	// DefaultHistoryMaxMsgsPerRoom is how many frames the room log keeps
	// per room when Config.HistoryMaxMsgsPerRoom is zero.
	DefaultHistoryMaxMsgsPerRoom = 100_000
	// DefaultHistoryMaxBytes sizes the room log when
	// Config.HistoryMaxBytes is zero and the account has no JetStream
	// storage limit to derive it from.
	DefaultHistoryMaxBytes = 1 << 30
	// MinHistoryBytes is the smallest room log.
	MinHistoryBytes = 1 << 20
	// HistoryDuplicateWindow is how long the room log remembers a frame's
	// ID (Nats-Msg-Id): a send retried within it is stored once. Capped by
	// the log's maximum age.
	HistoryDuplicateWindow = 10 * time.Minute
	// EventsMaxPerUser is how many events the events stream keeps per
	// user (the stream's MaxMsgsPerSubject); events older than
	// InvitationTTL go too.
	EventsMaxPerUser = 1000
)

// How the account's JetStream storage limit (every replica counted) is
// shared when the configuration gives no sizes of its own, in sixteenths:
//
//	blobs (object store)   8/16  one half
//	room log (stream)      4/16  one quarter
//	events (stream)        1/16
//	KV buckets             3/16  the rest, unreserved
//
// Blobs and the room log together take at most three quarters, whatever
// their own sizes (storageShareMax): the KV buckets, nonce claims among
// them, and the events keep a quarter however many blobs are uploaded and
// frames are sent.
const (
	storageShareDen   = 16
	blobStoreShareNum = 8
	historyShareNum   = 4
	eventsShareNum    = 1
	storageShareMax   = 12
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
	// affected. Zero takes half of the JetStream storage limit of the
	// store's account (for the storage Memory picks, every replica
	// counted: divided by Replicas), or less when HistoryMaxBytes leaves
	// less, or DefaultBlobStoreMaxBytes when the account has none. Blobs
	// and the room log together take at most three quarters of the
	// account's storage (ErrConfigValidation at Open otherwise): the KV
	// buckets and the events keep at least a quarter, so that blobs and
	// frames can never take the room of nonce claims. At least
	// MinBlobStoreBytes.
	BlobStoreMaxBytes int64
	// HistoryMaxAge is how long the room log (StreamRoomLog) keeps a
	// frame: the stream's MaxAge, the most a room may keep its frames
	// (a room keeps them for less with Room.HistoryMaxAge). Zero means
	// DefaultHistoryMaxAge; at least MinHistoryMaxAge.
	HistoryMaxAge time.Duration
	// HistoryMaxMsgsPerRoom is how many frames the room log keeps per
	// room, the oldest going first (the stream's MaxMsgsPerSubject). Zero
	// means DefaultHistoryMaxMsgsPerRoom; -1 no limit.
	HistoryMaxMsgsPerRoom int64
	// HistoryMaxBytes bounds the room log, in bytes of one replica, the
	// oldest frames of any room going first (the stream's MaxBytes).
	// Zero takes a quarter of the account's JetStream storage limit
	// (as BlobStoreMaxBytes, divided by Replicas), or less when
	// BlobStoreMaxBytes leaves less, or DefaultHistoryMaxBytes when the
	// account has none; -1 no bound of its own (only for an account
	// without a limit). At least MinHistoryBytes.
	HistoryMaxBytes int64
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
	if c.HistoryMaxAge == 0 {
		c.HistoryMaxAge = DefaultHistoryMaxAge
	}
	if c.HistoryMaxMsgsPerRoom == 0 {
		c.HistoryMaxMsgsPerRoom = DefaultHistoryMaxMsgsPerRoom
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
	if c.HistoryMaxAge < MinHistoryMaxAge {
		return fmt.Errorf("%w: history max age must be at least %s, got %s", ErrConfigValidation, MinHistoryMaxAge, c.HistoryMaxAge)
	}
	if c.HistoryMaxMsgsPerRoom < -1 {
		return fmt.Errorf("%w: history max messages per room must be positive, or -1 for no limit, got %d", ErrConfigValidation, c.HistoryMaxMsgsPerRoom)
	}
	if c.HistoryMaxBytes != 0 && c.HistoryMaxBytes != -1 && c.HistoryMaxBytes < MinHistoryBytes {
		return fmt.Errorf("%w: history max bytes must be at least %d, 0 to derive it from the account's storage limit, or -1 for no bound, got %d", ErrConfigValidation, MinHistoryBytes, c.HistoryMaxBytes)
	}
	return nil
}
