package router

import (
	"encoding/base64"
	"fmt"
	"log/slog"
	"math"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/kvstore"
)

// Defaults and bounds of Config.
const (
	// DefaultMaxFrameBytes is the largest frame the router accepts when
	// Config.MaxFrameBytes is zero: 768 KiB, the largest frame whose
	// base64 (exactly 1 MiB) still fits, with historyReplyOverhead of
	// JSON and headers around it, in a RoomsHistory reply under
	// authcallout.MinPublishBytes, the smallest publish limit a deployment
	// may set. A page of history holds at least one frame, whatever its
	// size; a stored frame that no reply could carry would be lost to
	// every member that missed its delivery. It holds the largest frame
	// client/e2e seals (a payload of e2e.MaxPayloadSize is about 700 KB
	// on the wire).
	DefaultMaxFrameBytes = (authcallout.MinPublishBytes - historyReplyOverhead) / 4 * 3
	// MinFrameBytes is the smallest Config.MaxFrameBytes: a frame with an
	// empty payload, its signature and key grant, with room to spare.
	MinFrameBytes = 1 << 10
	// DefaultSendRate is the sustained rate, in frames per second, at
	// which one member may send through one router instance.
	DefaultSendRate = 100
	// DefaultSendBurst is how many frames a member may send at once
	// before DefaultSendRate applies.
	DefaultSendBurst = 200
	// DefaultShards is how many goroutines handle sends: the frames of a
	// room always go to the same one, in arrival order.
	DefaultShards = 16
	// DefaultShardQueue bounds the sends waiting for each shard; beyond
	// it a send is refused (503, retry).
	DefaultShardQueue = 256
	// DefaultVersion is the service version when Config.Version is empty.
	DefaultVersion = "0.0.0-dev"

	// historyReplyOverhead is what a history reply holding one frame
	// needs besides the frame's base64: the JSON around it (sequence,
	// time, cursors) and the reply's headers, rounded up generously.
	historyReplyOverhead = 16 << 10
	// maxShards bounds Config.Shards.
	maxShards = 1024
	// maxShardQueue bounds Config.ShardQueue.
	maxShardQueue = 1 << 16
	// maxSendBurst bounds Config.SendBurst.
	maxSendBurst = 1 << 20
)

// HistoryReplyBytes is the size of the largest history reply a frame of
// frameBytes can be sent back in (one frame alone on its page): the
// publish limit of the services' connection must hold it (package node
// checks that).
func HistoryReplyBytes(frameBytes int) int64 {
	return int64(base64.StdEncoding.EncodedLen(frameBytes)) + historyReplyOverhead
}

// Config configures the routing service. Conn and Store are required.
type Config struct {
	// Conn is the router's own connection, as the deployment's router user
	// (authcallout.Keys.RouterUser): it receives the sends and may publish
	// only deliveries and into peers' inboxes, never into state.
	Conn *nats.Conn
	// Store is the state: the membership view the router follows and the
	// room log it appends to, on a connection of its own.
	Store *kvstore.Store
	// Logger receives the router's logs; nil discards them.
	Logger *slog.Logger
	// Version is the micro service version; empty means DefaultVersion.
	Version string
	// MaxFrameBytes bounds a frame (413 beyond): zero means
	// DefaultMaxFrameBytes; at least MinFrameBytes, at most
	// e2e.MaxFrameSize. Above the default, the deployment's publish limit
	// must hold HistoryReplyBytes of it.
	MaxFrameBytes int
	// SendRate is the sustained rate, in frames per second, at which one
	// member may send through one instance (429 beyond): zero means
	// DefaultSendRate, a negative value no limit.
	SendRate float64
	// SendBurst is how many frames a member may send at once before
	// SendRate applies: zero means DefaultSendBurst.
	SendBurst int
	// Shards is how many goroutines handle sends (zero: DefaultShards),
	// each the frames of the rooms hashed to it, in arrival order.
	Shards int
	// ShardQueue bounds the sends waiting for each shard (zero:
	// DefaultShardQueue); a send that finds its shard's queue full is
	// refused with 503.
	ShardQueue int
}

// withDefaults fills in the zero values.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if c.SendRate == 0 {
		c.SendRate = DefaultSendRate
	}
	if c.SendBurst == 0 {
		c.SendBurst = DefaultSendBurst
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.ShardQueue == 0 {
		c.ShardQueue = DefaultShardQueue
	}
	return c
}

// Validate checks c with its defaults applied; the error wraps
// ErrConfigValidation. Conn and Store are not required here, so that a
// command line can check its settings before it connects.
func (c Config) Validate() error { return c.withDefaults().validLimits() }

// valid checks a configuration with its defaults applied.
func (c Config) valid() error {
	if c.Conn == nil {
		return fmt.Errorf("%w: a connection is required", ErrConfigValidation)
	}
	if c.Store == nil {
		return fmt.Errorf("%w: a store is required", ErrConfigValidation)
	}
	return c.validLimits()
}

func (c Config) validLimits() error {
	switch {
	case math.IsNaN(c.SendRate):
		return fmt.Errorf("%w: send rate is not a number", ErrConfigValidation)
	case c.MaxFrameBytes < MinFrameBytes || c.MaxFrameBytes > e2e.MaxFrameSize:
		return fmt.Errorf("%w: max frame bytes must be %d..%d, got %d", ErrConfigValidation, MinFrameBytes, e2e.MaxFrameSize, c.MaxFrameBytes)
	case c.SendRate > 0 && (c.SendBurst < 1 || c.SendBurst > maxSendBurst):
		return fmt.Errorf("%w: send burst must be 1..%d, got %d", ErrConfigValidation, maxSendBurst, c.SendBurst)
	case c.Shards < 1 || c.Shards > maxShards:
		return fmt.Errorf("%w: shards must be 1..%d, got %d", ErrConfigValidation, maxShards, c.Shards)
	case c.ShardQueue < 1 || c.ShardQueue > maxShardQueue:
		return fmt.Errorf("%w: shard queue must be 1..%d, got %d", ErrConfigValidation, maxShardQueue, c.ShardQueue)
	}
	return nil
}
