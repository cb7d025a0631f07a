package nodetest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
)

// BlobStore is a node's object store of blobs as an operator with access
// to the store (not to any room key) sees it. It is the one place the
// tests name the layout of kvstore.BucketBlobs: a blob's chunk i is the
// object <roomID>/<blob>/<i>, its manifest <roomID>/<blob>.
type BlobStore struct {
	t     testing.TB
	store jetstream.ObjectStore
}

// Blobs opens n's object store of blobs over its store connection.
func Blobs(t testing.TB, n *node.Node) *BlobStore {
	t.Helper()
	js, err := jetstream.New(n.StoreConn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := js.ObjectStore(ctx, kvstore.BucketBlobs)
	if err != nil {
		t.Fatalf("open object store %s: %v", kvstore.BucketBlobs, err)
	}
	return &BlobStore{t: t, store: store}
}

// ChunkObject is the name of the object holding chunk i of a blob.
func ChunkObject(roomID, blob string, i int) string {
	return roomID + "/" + blob + "/" + strconv.Itoa(i)
}

// Chunk returns the stored bytes of chunk i of a blob.
func (b *BlobStore) Chunk(roomID, blob string, i int) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data, err := b.store.GetBytes(ctx, ChunkObject(roomID, blob, i))
	if err != nil {
		b.t.Fatalf("chunk %d of blob %s: %v", i, blob, err)
	}
	return data
}

// SetChunk overwrites the stored bytes of chunk i of a blob.
func (b *BlobStore) SetChunk(roomID, blob string, i int, data []byte) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.store.PutBytes(ctx, ChunkObject(roomID, blob, i), data); err != nil {
		b.t.Fatalf("overwrite chunk %d of blob %s: %v", i, blob, err)
	}
}

// Objects lists the live objects (chunks and manifest) of a blob, or of
// every blob of the room when blob is "".
func (b *BlobStore) Objects(roomID, blob string) []string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	list, err := b.store.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		b.t.Fatalf("list blobs: %v", err)
	}
	prefix := roomID + "/"
	if blob != "" {
		prefix += blob
	}
	var names []string
	for _, o := range list {
		if strings.HasPrefix(o.Name, prefix) && (blob == "" || o.Name == prefix || strings.HasPrefix(o.Name, prefix+"/")) {
			names = append(names, o.Name)
		}
	}
	return names
}
