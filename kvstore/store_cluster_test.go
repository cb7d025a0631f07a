package kvstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// replicationCases are the store suite's cases of this file (see
// TestStore).
var replicationCases = []storeCase{
	{"ReadThroughAnotherServer", testReadThroughAnotherServer},
}

// testReadThroughAnotherServer: every bucket has the backend's replicas,
// and what is written through one server is read through another (at R1,
// through another connection): users, room references and nonces.
func testReadThroughAnotherServer(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	st := e.open(t, kvstore.DefaultConfig())
	for _, b := range kvstore.Buckets() {
		if b == kvstore.BucketBlobs {
			continue // an object store, checked below
		}
		stream, err := e.js.Stream(ctx, "KV_"+b)
		if err != nil {
			t.Fatal(err)
		}
		if r := stream.CachedInfo().Config.Replicas; r != e.replicas {
			t.Errorf("bucket %s has %d replicas, want %d", b, r, e.replicas)
		}
	}
	blobs, err := e.js.ObjectStore(ctx, kvstore.BucketBlobs)
	if err != nil {
		t.Fatal(err)
	}
	if status, err := blobs.Status(ctx); err != nil || status.Replicas() != e.replicas {
		t.Errorf("object store %s: %v replicas (%v), want %d", kvstore.BucketBlobs, status, err, e.replicas)
	}
	owner := natstest.NewUserKey(t)
	if _, err := st.AddUser(ctx, kvstore.User{Pub: owner}); err != nil {
		t.Fatal(err)
	}
	id := anyRoomID()
	if _, err := st.CreateRoom(ctx, kvstore.Room{ID: id, Mode: subjects.ModeE2E, Owner: owner}, sealedKey("k")); err != nil {
		t.Fatal(err)
	}
	other := e.openElsewhere(t, kvstore.DefaultConfig())
	if ok, err := isAuthorized(ctx, other, owner); !ok || err != nil {
		t.Fatalf("authorized through another server = %v, %v", ok, err)
	}
	if u, err := other.GetUserFromLeader(ctx, owner); err != nil || u.Pub != owner {
		t.Fatalf("leader read through another server = %+v, %v", u, err)
	}
	refs, err := other.ListRoomsForEndpoint(ctx, owner)
	if err != nil || len(refs) != 1 || refs[0].RoomID != id {
		t.Fatalf("rooms through another server = %+v, %v", refs, err)
	}
	if err := st.ClaimNonce(ctx, "elsewhere"); err != nil {
		t.Fatal(err)
	}
	if err := other.ClaimNonce(ctx, "elsewhere"); !errors.Is(err, kvstore.ErrReplay) {
		t.Fatalf("replay through another server = %v, want ErrReplay", err)
	}
}

// TestR3QuorumLoss: with two of three nodes down, a Raft leader keeps
// leading for up to ~20 s before it notices; admission reads must fail
// closed much sooner, within the replica silence bound plus one check, and
// stay failed. Writes fail at once. (It stops nodes: its own cluster, not
// the suite's.)
func TestR3QuorumLoss(t *testing.T) {
	ctx := context.Background()
	c := natstest.RunCluster(t, 3)
	_, js := natstest.JetStream(t, c.Servers[0].ClientURL())
	st, err := kvstore.Open(ctx, js, kvstore.Config{Replicas: 3})
	if err != nil {
		t.Fatalf("open R3: %v", err)
	}
	owner := natstest.NewUserKey(t)
	if _, err := st.AddUser(ctx, kvstore.User{Pub: owner}); err != nil {
		t.Fatal(err)
	}
	_, js3 := natstest.JetStream(t, c.Servers[2].ClientURL())
	st3, err := kvstore.Open(ctx, js3, kvstore.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st3.GetUserFromLeader(ctx, owner); err != nil {
		t.Fatalf("leader read before the loss: %v", err)
	}
	c.Stop(0)
	c.Stop(1)
	if err := st3.ClaimNonce(ctx, "after-loss"); err == nil {
		t.Fatal("nonce claimed without quorum")
	}
	// Reads as the callout makes them: each within its 1 s deadline.
	read := func() (kvstore.User, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return st3.GetUserFromLeader(ctx, owner)
	}
	lostAt := time.Now()
	bound := 3*time.Second + 500*time.Millisecond + 2*time.Second
	for {
		_, err := read()
		if err != nil {
			t.Logf("admission reads fail %s after the loss: %v", time.Since(lostAt).Round(time.Millisecond), err)
			break
		}
		if time.Since(lostAt) > bound {
			t.Fatalf("leader reads still answered %s after quorum was lost (bound %s)", time.Since(lostAt), bound)
		}
		time.Sleep(100 * time.Millisecond) // poll interval; the bound ends the wait
	}
	for range 3 {
		if u, err := read(); err == nil {
			t.Fatalf("leader read answered again without quorum: %+v", u)
		}
	}
}
