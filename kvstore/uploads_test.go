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

// TestUploads: an upload record is claimed once, its state changes by
// compare-and-set, chunk digests are set once, usage adds up the records
// of a user and of a room, and a removal deletes only what it read.
func TestUploads(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	st, err := kvstore.Open(context.Background(), js, kvstore.Config{Replicas: 1, Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, bob := natstest.NewUserKey(t), natstest.NewUserKey(t)
	room, _ := subjects.NewRoomID(alice, subjects.ModeE2E)
	other, _ := subjects.NewRoomID(alice, subjects.ModeE2E)
	upload := func(pub, roomID, content string, size int64) kvstore.Upload {
		return kvstore.Upload{RoomID: roomID, Blob: subjects.BlobID([]byte(content)), Uploader: pub, Size: size, Started: time.Now().UTC()}
	}

	a := upload(alice, room, "a", 100)
	rev, err := st.ClaimUpload(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimUpload(ctx, upload(bob, room, "a", 100)); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("second claim = %v, want ErrExists", err)
	}
	got, gotRev, err := st.GetUpload(ctx, room, a.Blob)
	if err != nil || got.Uploader != alice || got.State != kvstore.UploadClaimed || gotRev != rev {
		t.Fatalf("GetUpload = %+v rev %d (%v), want alice's claim at %d", got, gotRev, err, rev)
	}
	for _, u := range []kvstore.Upload{a, upload(alice, other, "b", 20), upload(bob, room, "c", 3)} {
		if u.Blob != a.Blob {
			if _, err := st.ClaimUpload(ctx, u); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.IndexUpload(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if u, err := st.BlobUsage(ctx, alice, room); err != nil || u != (kvstore.BlobUsage{User: 120, Room: 103}) {
		t.Errorf("usage of alice and the room = %+v (%v), want 120 and 103", u, err)
	}

	a, rev, err = st.SetUploadState(ctx, a, rev, kvstore.UploadAdmitted)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.SetUploadState(ctx, a, rev-1, kvstore.UploadExpired); !errors.Is(err, kvstore.ErrConflict) {
		t.Errorf("state change at a stale revision = %v, want ErrConflict", err)
	}

	if d, err := st.ClaimChunk(ctx, room, a.Blob, 0, "SHA-256=one"); err != nil || d != "SHA-256=one" {
		t.Fatalf("ClaimChunk = %q, %v", d, err)
	}
	if d, err := st.ClaimChunk(ctx, room, a.Blob, 0, "SHA-256=two"); err != nil || d != "SHA-256=one" {
		t.Errorf("second ClaimChunk = %q, %v, want the first digest", d, err)
	}
	if _, err := st.ClaimChunk(ctx, room, a.Blob, -1, "SHA-256=x"); !errors.Is(err, kvstore.ErrInvalid) {
		t.Errorf("ClaimChunk of index -1 = %v, want ErrInvalid", err)
	}
	if digests, err := st.ChunkDigests(ctx, room, a.Blob); err != nil || len(digests) != 1 || digests[0] != "SHA-256=one" {
		t.Errorf("ChunkDigests = %v, %v", digests, err)
	}

	pending, err := st.PendingUploads(ctx)
	if err != nil || len(pending) != 3 {
		t.Fatalf("PendingUploads = %d entries (%v), want 3", len(pending), err)
	}
	if err := st.RemoveUpload(ctx, a, rev-1); !errors.Is(err, kvstore.ErrConflict) {
		t.Errorf("RemoveUpload at a stale revision = %v, want ErrConflict", err)
	}
	if err := st.RemoveUpload(ctx, a, rev); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.GetUpload(ctx, room, a.Blob); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("record after removal: %v", err)
	}
	if digests, err := st.ChunkDigests(ctx, room, a.Blob); err != nil || len(digests) != 0 {
		t.Errorf("chunk digests after removal: %v, %v", digests, err)
	}
	if u, err := st.BlobUsage(ctx, alice, room); err != nil || u != (kvstore.BlobUsage{User: 20, Room: 3}) {
		t.Errorf("usage after removal = %+v (%v), want 20 and 3", u, err)
	}
	if pending, err = st.PendingUploads(ctx); err != nil || len(pending) != 2 {
		t.Fatalf("PendingUploads after removal = %d (%v), want 2", len(pending), err)
	}

	// A pending entry is dropped only at the revision read: a newer one,
	// of an upload started since, stays.
	stale := pending[0]
	b := upload(alice, stale.RoomID, "", 0)
	b.Blob = stale.Blob
	if _, err := st.ClaimUpload(ctx, b); !errors.Is(err, kvstore.ErrExists) {
		t.Fatalf("claim over an existing record = %v", err)
	}
	if err := st.DropPending(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if after, err := st.PendingUploads(ctx); err != nil || len(after) != 2 {
		t.Errorf("a rewritten pending entry was dropped: %d left (%v), want 2", len(after), err)
	}

	for _, bad := range []kvstore.Upload{
		{RoomID: "a.b", Blob: a.Blob, Uploader: alice},
		{RoomID: room, Blob: "nothex", Uploader: alice},
		{RoomID: room, Blob: a.Blob, Uploader: "Unope"},
		{RoomID: room, Blob: a.Blob, Uploader: alice, Size: -1},
	} {
		if _, err := st.ClaimUpload(ctx, bad); !errors.Is(err, kvstore.ErrInvalid) {
			t.Errorf("ClaimUpload(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}
