package kvstore_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// The store suite: every case runs against a single server (R1) and a
// three-node cluster (R3), as a suite of replica clients runs against each
// backend. The cases live by topic in store_*_test.go; each is a
// func(t, env) and takes its store from the env, freshly created.
// Backends are started once and shared by the cases, one after the other:
// each case starts from empty buckets (storeEnv.open).

// storeCase is one case of the store suite.
type storeCase struct {
	name string
	run  func(t *testing.T, e *storeEnv)
}

// storeEnv is one backend of the store suite.
type storeEnv struct {
	// replicas of every bucket on this backend.
	replicas int
	// js is a connection to the backend's first server; other one to
	// another server (to the same one when there is only one).
	js, other jetstream.JetStream
	// cluster is the R3 backend's cluster (nil at R1).
	cluster *natstest.Cluster
	// made are the settings the buckets were last made with (nil: none
	// made yet).
	made *bucketSettings
}

// storeBackends are the backends the suite runs on.
var storeBackends = []struct {
	name  string
	start func(t *testing.T) *storeEnv
}{
	{"R1", func(t *testing.T) *storeEnv {
		srv := natstest.RunServer(t)
		_, js := natstest.JetStream(t, srv.ClientURL())
		_, other := natstest.JetStream(t, srv.ClientURL())
		return &storeEnv{replicas: 1, js: js, other: other}
	}},
	{"R3", func(t *testing.T) *storeEnv {
		c := natstest.RunCluster(t, 3)
		_, js := natstest.JetStream(t, c.Servers[0].ClientURL())
		_, other := natstest.JetStream(t, c.Servers[2].ClientURL())
		return &storeEnv{replicas: 3, js: js, other: other, cluster: c}
	}},
}

// TestStore runs every case of the suite on every backend:
// go test -run 'TestStore/R3/Users' runs one.
func TestStore(t *testing.T) {
	cases := slices.Concat(userCases, roomCases, grantCases, invitationCases, nonceCases, replicationCases, logCases, eventCases, viewCases)
	for _, b := range storeBackends {
		t.Run(b.name, func(t *testing.T) {
			e := b.start(t)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, e) })
			}
		})
	}
}

// open empties the store's buckets, then opens a store with cfg (its
// Replicas set to the backend's) through the first server: each case
// starts from an empty store. Buckets made with the same settings as the
// last case's are purged (fast, at R3 too); otherwise they are deleted, so
// that Open makes them anew with cfg's.
func (e *storeEnv) open(t *testing.T, cfg kvstore.Config) *suiteStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	made := bucketSettings{memory: cfg.Memory, nonceTTL: cfg.NonceTTL}
	purge := e.made != nil && *e.made == made
	streams := kvstore.Streams()
	for _, b := range kvstore.Buckets() {
		streams = append(streams, streamOf(b))
	}
	for _, stream := range streams {
		var err error
		if purge {
			var s jetstream.Stream
			if s, err = e.js.Stream(ctx, stream); err == nil {
				err = s.Purge(ctx)
			}
		} else {
			err = e.js.DeleteStream(ctx, stream)
		}
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("empty stream %s: %v", stream, err)
		}
	}
	e.made = &made
	if purge {
		return e.openOn(t, e.js, cfg)
	}
	// Right after a stream is deleted, nats-server may still be removing
	// its storage and refuse to make it again (10049, "error creating
	// store for stream"): that refusal is retried, nothing else.
	cfg.Replicas = e.replicas
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := kvstore.Open(context.Background(), e.js, cfg)
		var apiErr *jetstream.APIError
		if err == nil {
			return &suiteStore{Store: st, t: t, e: e}
		}
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != jsErrStreamStoreFailed || time.Now().After(deadline) {
			t.Fatalf("open store (R%d): %v", e.replicas, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval; the deadline bounds the retries
	}
}

// suiteStore is the store a case works on: at R3, every write returns
// only once it is stored on every replica (suiteStore.synced).
//
// Why: reads other than GetUserFromLeader are direct gets, which any
// replica answers (kvstore documents it), a follower the last write has
// not reached yet with the value before it. The store's writes read
// first too (a room before adding a member to it). So one client's reads
// may miss its own writes at R3 by a few milliseconds: the cases, which
// check exactly what they check at R1, would fail by accident. Waiting
// for the replicas after each write removes that race and nothing else.
type suiteStore struct {
	*kvstore.Store
	t *testing.T
	e *storeEnv
}

// synced waits until the backend's streams are in sync on every server
// (at R1 at once). It reports with t.Errorf: writes may run on other
// goroutines.
func (s *suiteStore) synced() {
	if s.e.cluster == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.e.cluster.WaitStreamsInSync(ctx); err != nil {
		s.t.Errorf("after a write: %v", err)
	}
}

func (s *suiteStore) AddUser(ctx context.Context, u kvstore.User) (kvstore.User, error) {
	defer s.synced()
	return s.Store.AddUser(ctx, u)
}

func (s *suiteStore) RevokeUser(ctx context.Context, pub string) (kvstore.User, error) {
	defer s.synced()
	return s.Store.RevokeUser(ctx, pub)
}

func (s *suiteStore) SetEncryptionKey(ctx context.Context, pub string, b kvstore.EncKeyBinding) (kvstore.User, error) {
	defer s.synced()
	return s.Store.SetEncryptionKey(ctx, pub, b)
}

func (s *suiteStore) EnsureAdmin(ctx context.Context, pub, name string) (kvstore.User, error) {
	defer s.synced()
	return s.Store.EnsureAdmin(ctx, pub, name)
}

func (s *suiteStore) CreateRoom(ctx context.Context, r kvstore.Room, ownerKey kvstore.SealedKey) (kvstore.Room, error) {
	defer s.synced()
	return s.Store.CreateRoom(ctx, r, ownerKey)
}

func (s *suiteStore) AddMember(ctx context.Context, roomID, pub, role string, epoch uint64, key kvstore.SealedKey) (kvstore.Member, error) {
	defer s.synced()
	return s.Store.AddMember(ctx, roomID, pub, role, epoch, key)
}

func (s *suiteStore) RemoveMember(ctx context.Context, roomID, pub string) error {
	defer s.synced()
	return s.Store.RemoveMember(ctx, roomID, pub)
}

func (s *suiteStore) RekeyTo(ctx context.Context, roomID string, fromEpoch, toEpoch uint64, keys map[string]kvstore.SealedKey) (uint64, error) {
	defer s.synced()
	return s.Store.RekeyTo(ctx, roomID, fromEpoch, toEpoch, keys)
}

func (s *suiteStore) Invite(ctx context.Context, roomID, pub string, epoch uint64, key kvstore.SealedKey) (kvstore.Invitation, error) {
	defer s.synced()
	return s.Store.Invite(ctx, roomID, pub, epoch, key)
}

func (s *suiteStore) AcceptInvitation(ctx context.Context, roomID, pub string) (kvstore.Member, error) {
	defer s.synced()
	return s.Store.AcceptInvitation(ctx, roomID, pub)
}

func (s *suiteStore) CancelInvitation(ctx context.Context, roomID, pub string) (kvstore.Invitation, error) {
	defer s.synced()
	return s.Store.CancelInvitation(ctx, roomID, pub)
}

func (s *suiteStore) ClaimNonce(ctx context.Context, nonce string) error {
	defer s.synced()
	return s.Store.ClaimNonce(ctx, nonce)
}

// streamOf is the name of the stream behind bucket b.
func streamOf(b string) string {
	if b == kvstore.BucketBlobs {
		return "OBJ_" + b
	}
	return "KV_" + b
}

// jsErrStreamStoreFailed is nats-server's error code for "error creating
// store for stream" (JSStreamStoreFailedF); nats.go names no constant.
const jsErrStreamStoreFailed jetstream.ErrorCode = 10049

// bucketSettings are the settings of a Config that buckets are made with
// and cannot change afterwards (or not without a case noticing).
type bucketSettings struct {
	memory   bool
	nonceTTL time.Duration
}

// openElsewhere opens a second store with cfg on the same buckets
// through another server (another connection at R1).
func (e *storeEnv) openElsewhere(t *testing.T, cfg kvstore.Config) *suiteStore {
	t.Helper()
	return e.openOn(t, e.other, cfg)
}

func (e *storeEnv) openOn(t *testing.T, js jetstream.JetStream, cfg kvstore.Config) *suiteStore {
	t.Helper()
	cfg.Replicas = e.replicas
	st, err := kvstore.Open(context.Background(), js, cfg)
	if err != nil {
		t.Fatalf("open store (R%d): %v", e.replicas, err)
	}
	return &suiteStore{Store: st, t: t, e: e}
}

// openStore starts a server and opens a store on it (for the tests outside
// the suite).
func openStore(t *testing.T, cfg kvstore.Config) (*kvstore.Store, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	st, err := kvstore.Open(context.Background(), js, cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st, js
}

// newUserKey is natstest.NewUserKey, under the name the tests outside
// this file (records_test.go, bench_test.go) still use.
var newUserKey = natstest.NewUserKey

// userReader and roomKeyReader are what the helpers below read from:
// *kvstore.Store, or a case's suiteStore.
type userReader interface {
	GetUser(ctx context.Context, pub string) (kvstore.User, error)
}

type roomKeyReader interface {
	GetRoom(ctx context.Context, roomID string) (kvstore.Room, error)
	GetRoomKey(ctx context.Context, roomID string, epoch uint64, pub string) (kvstore.SealedKey, error)
}

// isAuthorized and hasAdmin are what the callout and the services decide
// from a user record: registered and not revoked (and an admin). They
// fail closed: a backend error returns false with the error.
func isAuthorized(ctx context.Context, st userReader, pub string) (bool, error) {
	ok, _, err := userFlags(ctx, st, pub)
	return ok, err
}

func hasAdmin(ctx context.Context, st userReader, pub string) (bool, error) {
	_, admin, err := userFlags(ctx, st, pub)
	return admin, err
}

func userFlags(ctx context.Context, st userReader, pub string) (authorized, admin bool, err error) {
	u, err := st.GetUser(ctx, pub)
	if errors.Is(err, kvstore.ErrNotFound) {
		return false, false, nil
	}
	authorized = err == nil && !u.Revoked()
	return authorized, authorized && u.Admin, err
}

// latestRoomKey reads the room's current epoch and pub's key of that
// epoch, as a client does; a cleartext room has none (ErrNotFound).
func latestRoomKey(ctx context.Context, st roomKeyReader, roomID, pub string) (uint64, kvstore.SealedKey, error) {
	room, err := st.GetRoom(ctx, roomID)
	if err != nil {
		return 0, kvstore.SealedKey{}, err
	}
	if !room.Encrypted() {
		return 0, kvstore.SealedKey{}, kvstore.ErrNotFound
	}
	key, err := st.GetRoomKey(ctx, roomID, room.Epoch, pub)
	return room.Epoch, key, err
}

// anyRoomID returns a new room ID for a room stored without its salt, as
// a test or an older version stores one: the store checks the ID against
// the owner only when the room has a salt.
func anyRoomID() string {
	id, _ := subjects.NewRoomID("a room stored without a salt", subjects.ModeE2E)
	return id
}

// sealedKey returns a sealed key of bytes s with a grant of
// subjects.GrantLen bytes that starts with s (the store never verifies a
// grant), so that what is read back tells which key it is.
func sealedKey(s string) kvstore.SealedKey {
	return kvstore.SealedKey{Sealed: []byte(s), Grant: grantOf(s)}
}

// grantOf returns s padded (or cut) to subjects.GrantLen bytes.
func grantOf(s string) []byte {
	g := make([]byte, subjects.GrantLen)
	copy(g, s)
	return g
}
