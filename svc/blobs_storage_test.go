package svc_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/nodetest"
)

// newLimitedEnv is newEnv on a node whose account UNIBUS has the given
// limits (JetStream storage among them), with alice registered.
func newLimitedEnv(t testing.TB, limits authcallout.PeerLimits, change func(*svc.Config)) *env {
	t.Helper()
	e := &env{t: t, logs: &logBuffer{}, peers: map[*nats.Conn]*peer{}, peerErrs: &logBuffer{}, revoked: map[string]bool{}, kickable: map[string]bool{}}
	e.storeCfg = kvstore.Config{Replicas: 1, Memory: true}
	e.cfg = svc.Config{
		Logger:  slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version: testVersion,
	}
	change(&e.cfg)
	e.admin = e.newIdentity(t, "admin")
	e.node = nodetest.Run(t, func(c *node.Config) {
		c.Store, c.Services, c.Admin = e.storeCfg, e.cfg, e.admin.pub
		c.Callout.Limits = limits
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("services log:\n%s", e.logs)
		}
	})
	e.store, e.svc = e.node.Store, e.node.Services()
	e.cfg.Store, e.cfg.Conn = e.node.Store, e.node.ServiceConn
	js, err := jetstream.New(e.node.StoreConn)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	e.js = js
	e.connect(t, e.admin)
	e.setKey(t, e.admin)
	e.alice = e.register(t, "alice")
	return e
}

// putUntilFull uploads blobs of size into room as u until one is refused,
// and checks that the refusal is the blob store's 413; it returns how many
// went in.
func (e *env) putUntilFull(t testing.TB, u *user, room subjects.RoomInfo, size int) int {
	t.Helper()
	for stored := 0; stored < 64; stored++ {
		content := randomBytes(t, size)
		blob := subjects.BlobID(content)
		for i := range subjects.BlobChunks(int64(size)) {
			r := u.request(t, subjects.BlobsPut, putChunk(blob, content, room, i))
			if code := r.Header.Get(micro.ErrorCodeHeader); code != "" {
				wantError(t, r, subjects.CodeTooLarge, "the blob store is full", "this blob of "+strconv.Itoa(size)+" bytes")
				return stored
			}
		}
	}
	t.Fatalf("64 blobs of %d bytes stored, none refused", size)
	return 0
}

// TestBlobStoreFull: blobs that fill the object store are refused with
// 413, whether the services see it coming or the store refuses a chunk,
// and the control plane stays up: the KV buckets keep their share of the
// account's JetStream storage, so users are added, rooms created and the
// nonces of signed requests claimed.
func TestBlobStoreFull(t *testing.T) {
	const account = 24 << 20
	e := newLimitedEnv(t, authcallout.PeerLimits{MaxMemoryStore: account}, func(c *svc.Config) {
		c.MaxBlobBytes, c.MaxBlobBytesPerUser, c.MaxBlobBytesPerRoom = 4<<20, -1, -1
	})
	if got, want := e.store.BlobsMaxBytes(), int64(account/2); got != want {
		t.Fatalf("blob store of %d bytes, want half of the account's %d (a quarter goes to the room log)", got, account)
	}
	room := e.createRoom(t, e.alice, subjects.ModeCleartext)

	// Another instance shrinks the store under the services' feet: the
	// chunk that does not fit is refused by the store itself.
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	resize := func(maxBytes int64) {
		t.Helper()
		cfg := e.storeCfg
		cfg.BlobStoreMaxBytes = maxBytes
		if _, err := kvstore.Open(ctx, e.js, cfg); err != nil {
			t.Fatalf("resize the blob store to %d: %v", maxBytes, err)
		}
	}
	resize(6 << 20)
	if n := e.putUntilFull(t, e.alice, room, 4<<20); n != 1 {
		t.Errorf("%d blobs of 4 MiB in a store of 6 MiB", n)
	}
	// Back to its size: the services refuse what would not fit before
	// storing any of it, down to small blobs.
	resize(0)
	for _, size := range []int{4 << 20, chunk, 32 << 10, 1 << 10} {
		e.putUntilFull(t, e.alice, room, size)
	}

	// The control plane is up.
	bob := e.newIdentity(t, "bob")
	call[subjects.UserInfo](t, e.admin, subjects.UsersAdd, subjects.AddUserRequest{Pub: bob.pub, Name: "bob"})
	e.connect(t, bob)
	e.setKey(t, bob)
	e.invite(t, e.alice, e.createRoom(t, e.alice, subjects.ModeE2E), bob)
	for range 50 {
		call[subjects.UserInfo](t, bob, subjects.UsersGet, subjects.GetUserRequest{Pub: e.alice.pub})
	}
	st, err := e.blobStore(t).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if limit := e.store.BlobsMaxBytes(); int64(st.Size()) > limit || int64(st.Size()) < limit*9/10 {
		t.Errorf("the blob store holds %d bytes, want nearly all of its %d and no more", st.Size(), limit)
	}
}
