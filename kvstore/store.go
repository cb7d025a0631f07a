package kvstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	// BucketInvitations holds the pending invitations, under
	// <invitee>.<roomID>; each expires after InvitationTTL (the bucket's
	// TTL, its stream's MaxAge).
	BucketInvitations = "UNIBUS_invitations"
	// BucketBlobs is the object store of the blobs service. Its objects
	// are
	//
	//	<roomID>/<blob>/<index>   chunk index (decimal) of a blob, as put
	//	<roomID>/<blob>           the manifest of a complete blob: an empty
	//	                          object whose metadata holds "size" and
	//	                          "chunks"
	//
	// A manifest is written only after the chunks, read back in order,
	// hashed to the blob's ID; a blob without one is incomplete and cannot
	// be read. Its size is bounded (Config.BlobStoreMaxBytes), and a full
	// store refuses puts.
	BucketBlobs = "UNIBUS_blobs"
	// BucketBlobUploads records who uploads which blob, what the chunks
	// are and which uploads are incomplete (see Upload):
	//
	//	blob.<roomID>.<blob>                  Upload: uploader, size, state
	//	user.<pub>.<roomID>.<blob>            the uploader's index entry
	//	chunk.<roomID>.<blob>.<index>         the digest of chunk index, set once
	//	pending.<roomID>.<blob>               an upload not yet complete
	//
	// A room's blob usage is the sum of its blob.<roomID>.* records, a
	// user's the sum of its user.<pub>.> entries.
	BucketBlobUploads = "UNIBUS_blob_uploads"
)

// Buckets lists every KV bucket and object store the store creates, by
// name: what tests, docs and operators iterate instead of lists of their
// own.
func Buckets() []string {
	return []string{BucketUsers, BucketRooms, BucketMembers, BucketRoomsByMember, BucketRoomKeys, BucketNonces, BucketInvitations, BucketBlobUploads, BucketBlobs}
}

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
	invites  jetstream.KeyValue
	uploads  jetstream.KeyValue
	blobs    jetstream.ObjectStore
	// blobsMaxBytes is the object store's size (its MaxBytes).
	blobsMaxBytes int64
	// roomLog and events are the streams of StreamRoomLog and
	// StreamEvents.
	roomLog jetstream.Stream
	events  jetstream.Stream
	// historyMaxAge is the room log's MaxAge (Config.HistoryMaxAge).
	historyMaxAge time.Duration
	// chains are the rooms' last stored sequences (see AppendFrame).
	chains *chainCache

	opTimeout time.Duration
	nonceTTL  time.Duration
	replicas  int
	quorum    *quorumGate
	now       func() time.Time
	logger    *slog.Logger
}

// Open creates (or updates) the eight KV buckets and the blobs' object
// store (Buckets) and the streams of the room log and of the events
// (Streams), all with the same replicas and storage, and returns a Store
// over them. The sizes of the object store and of the streams come from
// the Config and the account's JetStream storage limit (see the shares in
// config.go).
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	if err := cfg.valid(); err != nil {
		return nil, err
	}
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	s := &Store{
		js: js, opTimeout: cfg.OpTimeout, nonceTTL: cfg.NonceTTL, replicas: cfg.Replicas, quorum: newQuorumGate(), now: time.Now, logger: cfg.Logger,
		historyMaxAge: cfg.HistoryMaxAge, chains: newChainCache(maxChains),
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
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
		{&s.invites, jetstream.KeyValueConfig{Bucket: BucketInvitations, Description: "unibus pending invitations: proposals the invitee accepts or declines", TTL: InvitationTTL}},
		{&s.uploads, jetstream.KeyValueConfig{Bucket: BucketBlobUploads, Description: "unibus blob uploads: uploader, size and state of each blob, chunk digests, incomplete uploads"}},
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
	sizes, err := s.storageSizes(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	s.blobsMaxBytes = sizes.blobs
	cctx, cancel := s.bound(ctx)
	defer cancel()
	blobs, err := js.CreateOrUpdateObjectStore(cctx, jetstream.ObjectStoreConfig{
		Bucket:      BucketBlobs,
		Description: "unibus blobs: room content by SHA-256, in chunks, with a manifest once verified",
		Storage:     storage,
		Replicas:    cfg.Replicas,
		MaxBytes:    s.blobsMaxBytes,
	})
	if err != nil {
		return nil, storageError(err, "blobs", "object store "+BucketBlobs, s.blobsMaxBytes, cfg.Replicas)
	}
	s.blobs = blobs
	if err := s.openStreams(ctx, cfg, storage, sizes); err != nil {
		return nil, err
	}
	return s, nil
}

// Blobs is the object store of the blobs service (BucketBlobs).
func (s *Store) Blobs() jetstream.ObjectStore { return s.blobs }

// BlobsMaxBytes is the size of the object store of blobs, in bytes of one
// replica: what it holds at most, chunks and their metadata together.
func (s *Store) BlobsMaxBytes() int64 { return s.blobsMaxBytes }

// bound limits ctx by the operation timeout (the earlier deadline wins).
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

// getRecord reads the record under key and returns it with its revision.
// A missing key is ErrNotFound, and so is a value that is not a valid
// record for key (ErrInvalidRecord, see decodeRecord).
func getRecord[T record](ctx context.Context, s *Store, kv jetstream.KeyValue, key string) (T, uint64, error) {
	var zero T
	e, err := kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return zero, 0, ErrNotFound
		}
		return zero, 0, fmt.Errorf("get %s/%s: %w", kv.Bucket(), key, err)
	}
	v, err := decodeRecord[T](s, kv.Bucket(), key, e.Value())
	if err != nil {
		return zero, 0, err
	}
	return v, e.Revision(), nil
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

// entry is one key and value read by listEntries, with its revision
// where the reader knows it.
type entry struct {
	key   string
	value []byte
	rev   uint64
}

// listEntries returns the current entries whose keys match filter (a KV key
// pattern) through one ordered watcher: a single round of messages instead
// of a Get per key. Duplicates that a busy bucket may report are folded,
// last value wins. An empty result is not an error.
func listEntries(ctx context.Context, kv jetstream.KeyValue, filter string, opts ...jetstream.WatchOpt) ([]entry, error) {
	return listFiltered(ctx, kv, []string{filter}, opts...)
}

// listFiltered is listEntries for the keys that match any of filters, in
// one round of messages.
func listFiltered(ctx context.Context, kv jetstream.KeyValue, filters []string, opts ...jetstream.WatchOpt) ([]entry, error) {
	filter := strings.Join(filters, ",")
	w, err := kv.WatchFiltered(ctx, filters, append(opts, jetstream.IgnoreDeletes())...)
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
				out[i].value, out[i].rev = e.Value(), e.Revision()
				continue
			}
			index[e.Key()] = len(out)
			out = append(out, entry{key: e.Key(), value: e.Value(), rev: e.Revision()})
		case <-ctx.Done():
			return nil, fmt.Errorf("list %s/%s: %w", kv.Bucket(), filter, ctx.Err())
		}
	}
}
