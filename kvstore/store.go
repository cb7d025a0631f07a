package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket names: the only place they are spelled.
const (
	BucketUsers         = "UNIBUS_users"
	BucketRooms         = "UNIBUS_rooms"
	BucketMembers       = "UNIBUS_members"
	BucketRoomsByMember = "UNIBUS_rooms_by_member"
	BucketRoomKeys      = "UNIBUS_room_keys"
	BucketNonces        = "UNIBUS_nonces"
)

// Store is the typed view of the unibus buckets. It is safe for concurrent
// use; it owns no goroutines and needs no Close (the caller owns the
// connection).
type Store struct {
	js       jetstream.JetStream
	users    jetstream.KeyValue
	rooms    jetstream.KeyValue
	members  jetstream.KeyValue
	byMember jetstream.KeyValue
	keys     jetstream.KeyValue
	nonces   jetstream.KeyValue

	opTimeout time.Duration
	nonceTTL  time.Duration
	replicas  int
	quorum    *quorumGate
	now       func() time.Time
}

// Open creates (or updates) the six buckets and returns a Store over them.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.valid(); err != nil {
		return nil, err
	}
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	s := &Store{js: js, opTimeout: cfg.OpTimeout, nonceTTL: cfg.NonceTTL, replicas: cfg.Replicas, quorum: newQuorumGate(), now: time.Now}
	buckets := []struct {
		kv   *jetstream.KeyValue
		conf jetstream.KeyValueConfig
	}{
		{&s.users, jetstream.KeyValueConfig{Bucket: BucketUsers, Description: "unibus users: identity, admin flag, encryption key"}},
		{&s.rooms, jetstream.KeyValueConfig{Bucket: BucketRooms, Description: "unibus rooms: subject, mode, owner, epoch"}},
		{&s.members, jetstream.KeyValueConfig{Bucket: BucketMembers, Description: "unibus room members: role, joined epoch"}},
		{&s.byMember, jetstream.KeyValueConfig{Bucket: BucketRoomsByMember, Description: "unibus reverse index: rooms of a member"}},
		{&s.keys, jetstream.KeyValueConfig{Bucket: BucketRoomKeys, Description: "unibus room keys sealed to each member per epoch"}},
		{&s.nonces, jetstream.KeyValueConfig{
			Bucket:         BucketNonces,
			Description:    "unibus anti-replay nonces (per-key TTL)",
			TTL:            cfg.NonceTTL,
			LimitMarkerTTL: cfg.NonceTTL,
		}},
	}
	for _, b := range buckets {
		b.conf.Replicas = cfg.Replicas
		b.conf.Storage = storage
		cctx, cancel := s.bound(ctx)
		kv, err := js.CreateOrUpdateKeyValue(cctx, b.conf)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", b.conf.Bucket, err)
		}
		*b.kv = kv
	}
	return s, nil
}

// bound limits ctx by the operation timeout (the earlier deadline wins).
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// getJSON reads key into v and returns its revision. A missing key is
// ErrNotFound.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	e, err := kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return 0, ErrNotFound
		}
		return 0, fmt.Errorf("get %s/%s: %w", kv.Bucket(), key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("decode %s/%s: %w", kv.Bucket(), key, err)
	}
	return e.Revision(), nil
}

// exists reports whether key is present.
func exists(ctx context.Context, kv jetstream.KeyValue, key string) (bool, error) {
	_, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s/%s: %w", kv.Bucket(), key, err)
	}
	return true, nil
}

func putJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", kv.Bucket(), key, err)
	}
	if _, err := kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("put %s/%s: %w", kv.Bucket(), key, err)
	}
	return nil
}

// createJSON stores v under key only if key is absent (ErrExists otherwise).
func createJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", kv.Bucket(), key, err)
	}
	if _, err := kv.Create(ctx, key, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrExists
		}
		return fmt.Errorf("create %s/%s: %w", kv.Bucket(), key, err)
	}
	return nil
}

// updateJSON replaces key at revision rev (ErrConflict if it moved on).
func updateJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any, rev uint64) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode %s/%s: %w", kv.Bucket(), key, err)
	}
	newRev, err := kv.Update(ctx, key, b, rev)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return 0, ErrConflict
		}
		return 0, fmt.Errorf("update %s/%s: %w", kv.Bucket(), key, err)
	}
	return newRev, nil
}

func deleteKey(ctx context.Context, kv jetstream.KeyValue, key string) error {
	if err := kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("delete %s/%s: %w", kv.Bucket(), key, err)
	}
	return nil
}

// entry is one key and value read by listEntries.
type entry struct {
	key   string
	value []byte
}

// listEntries returns the current entries whose keys match filter (a KV key
// pattern) through one ordered watcher: a single round of messages instead
// of a Get per key. Duplicates that a busy bucket may report are folded,
// last value wins. An empty result is not an error.
func listEntries(ctx context.Context, kv jetstream.KeyValue, filter string, opts ...jetstream.WatchOpt) ([]entry, error) {
	w, err := kv.Watch(ctx, filter, append(opts, jetstream.IgnoreDeletes())...)
	if err != nil {
		return nil, fmt.Errorf("list %s/%s: %w", kv.Bucket(), filter, err)
	}
	defer func() { _ = w.Stop() }()
	index := map[string]int{}
	var out []entry
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // all current values delivered
				return out, nil
			}
			if i, ok := index[e.Key()]; ok {
				out[i].value = e.Value()
				continue
			}
			index[e.Key()] = len(out)
			out = append(out, entry{key: e.Key(), value: e.Value()})
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s/%s: %w", kv.Bucket(), filter, ctx.Err())
		}
	}
}
