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
	return nil
}
