package svc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
)

// blobStore is the blobs service's object store, for inspection.
func (e *env) blobStore(t testing.TB) jetstream.ObjectStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	os, err := e.js.ObjectStore(ctx, kvstore.BucketBlobs)
	if err != nil {
		t.Fatalf("object store %s: %v", kvstore.BucketBlobs, err)
	}
	return os
}

// blobSeq is the last sequence of the blob store: any write moves it.
func (e *env) blobSeq(t testing.TB) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	st, err := e.blobStore(t).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.(*jetstream.ObjectBucketStatus).StreamInfo().State.LastSeq
}

// objectExists reports whether the blob store holds a live object name.
func (e *env) objectExists(t testing.TB, name string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	_, err := e.blobStore(t).GetInfo(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return false
	}
	if err != nil {
		t.Fatalf("object %s: %v", name, err)
	}
	return true
}

// chunksOf cuts content into the chunks of the wire protocol.
func chunksOf(content []byte) [][]byte {
	n := subjects.BlobChunks(int64(len(content)))
	out := make([][]byte, n)
	for i := range n {
		start := i * subjects.BlobChunkSize
		out[i] = content[start : start+subjects.BlobChunkLen(int64(len(content)), i)]
	}
	return out
}

func putChunk(blob string, content []byte, room subjects.RoomInfo, i int) subjects.BlobPutRequest {
	return subjects.BlobPutRequest{RoomID: room.RoomID, Blob: blob, Size: int64(len(content)), Index: i, Data: chunksOf(content)[i]}
}

// TestBlobsPutGet: chunks go in, the last one completes the blob, another
// member reads it back chunk by chunk, and puts are idempotent.
func TestBlobsPutGet(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)

	for _, size := range []int{0, 1, subjects.BlobChunkSize, 2*subjects.BlobChunkSize + 7} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			content := randomBytes(t, size)
			blob := subjects.BlobID(content)
			chunks := subjects.BlobChunks(int64(size))
			for i := range chunks {
				got := call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, i))
				want := subjects.BlobInfo{RoomID: room.RoomID, Blob: blob, Size: int64(size), Chunks: chunks, Complete: i == chunks-1}
				if got != want {
					t.Fatalf("put %d: %+v, want %+v", i, got, want)
				}
				if i < chunks-1 {
					// Not readable before it is complete.
					wantError(t, e.bob.request(t, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: blob}), subjects.CodeNotFound, "not found", "not complete")
				}
			}
			var read []byte
			for i := range chunks {
				ch := call[subjects.BlobChunk](t, e.bob, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: blob, Index: i})
				if ch.RoomID != room.RoomID || ch.Blob != blob || ch.Index != i || ch.Chunks != chunks || ch.Size != int64(size) {
					t.Fatalf("get %d: %+v", i, ch)
				}
				read = append(read, ch.Data...)
			}
			if !bytes.Equal(read, content) {
				t.Fatalf("read %d bytes back, not the %d put", len(read), len(content))
			}
			wantError(t, e.bob.request(t, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: blob, Index: chunks}),
				subjects.CodeBadRequest, "out of range")

			// A complete blob takes any chunk again, stores nothing and
			// answers complete: an uploader of the same content stops.
			before := e.blobSeq(t)
			for i := range chunks {
				if got := call[subjects.BlobInfo](t, e.bob, subjects.BlobsPut, putChunk(blob, content, room, i)); !got.Complete {
					t.Fatalf("put %d of a complete blob: %+v", i, got)
				}
			}
			if after := e.blobSeq(t); after != before {
				t.Errorf("puts to a complete blob wrote (sequence %d → %d)", before, after)
			}
		})
	}

	t.Run("a chunk put twice is stored once", func(t *testing.T) {
		content := randomBytes(t, subjects.BlobChunkSize+1)
		blob := subjects.BlobID(content)
		call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, 0))
		before := e.blobSeq(t)
		if got := call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, 0)); got.Complete {
			t.Fatalf("complete after chunk 0 of 2: %+v", got)
		}
		if after := e.blobSeq(t); after != before {
			t.Errorf("the same chunk again wrote (sequence %d → %d)", before, after)
		}
		if got := call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, 1)); !got.Complete {
			t.Fatalf("not complete after the last chunk: %+v", got)
		}
	})
}

// TestBlobsCompletion: the last chunk completes the blob only when every
// chunk is there (409 otherwise), and only when they match its hash (400
// otherwise, and the chunks are gone).
func TestBlobsCompletion(t *testing.T) {
	e := newEnv(t)
	room := e.createRoom(t, e.alice, subjects.ModeCleartext)

	t.Run("missing chunk", func(t *testing.T) {
		content := randomBytes(t, 2*subjects.BlobChunkSize+1)
		blob := subjects.BlobID(content)
		wantError(t, e.alice.request(t, subjects.BlobsPut, putChunk(blob, content, room, 2)), subjects.CodeConflict, "chunk 0", "missing", "last chunk (2) again")
		call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, 1))
		wantError(t, e.alice.request(t, subjects.BlobsPut, putChunk(blob, content, room, 2)), subjects.CodeConflict, "chunk 0", "missing")
		call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, 0))
		if got := call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, 2)); !got.Complete {
			t.Fatalf("not complete with every chunk: %+v", got)
		}
	})

	t.Run("content does not match its hash", func(t *testing.T) {
		content := randomBytes(t, subjects.BlobChunkSize+10)
		other := bytes.Clone(content)
		other[len(other)-1] ^= 1
		blob := subjects.BlobID(other)
		call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, content, room, 0))
		if !e.objectExists(t, nodetest.ChunkObject(room.RoomID, blob, 0)) {
			t.Fatal("chunk 0 not stored")
		}
		wantError(t, e.alice.request(t, subjects.BlobsPut, putChunk(blob, content, room, 1)), subjects.CodeBadRequest, "does not match its hash", blob)
		for i := range 2 {
			if e.objectExists(t, nodetest.ChunkObject(room.RoomID, blob, i)) {
				t.Errorf("chunk %d of a mismatched blob is still stored", i)
			}
		}
		wantError(t, e.alice.request(t, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: blob}), subjects.CodeNotFound)

		// The right content under the same ID is stored afterwards.
		for i := range 2 {
			call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(blob, other, room, i))
		}
		ch := call[subjects.BlobChunk](t, e.alice, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: blob, Index: 1})
		if !bytes.Equal(ch.Data, chunksOf(other)[1]) {
			t.Error("the re-uploaded blob does not read back")
		}
	})
}

// TestBlobsRefused: malformed, over-size and unauthorized requests are
// refused before anything is stored.
func TestBlobsRefused(t *testing.T) {
	const limit = 3*subjects.BlobChunkSize + 5
	e := newEnv(t, withConfig(func(c *svc.Config) { c.MaxBlobBytes = limit }))
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	content := []byte("hello blob")
	blob := subjects.BlobID(content)
	ok := subjects.BlobPutRequest{RoomID: room.RoomID, Blob: blob, Size: int64(len(content)), Data: content}
	put := func(change func(*subjects.BlobPutRequest)) subjects.BlobPutRequest {
		r := ok
		change(&r)
		return r
	}
	full := make([]byte, subjects.BlobChunkSize)

	before, seq := e.snapshot(t), e.blobSeq(t)
	for _, tc := range []struct {
		name string
		who  *user
		subj string
		body any
		code int
		want []string
	}{
		{"no room", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.RoomID = "" }), 400, []string{"room_id is required"}},
		{"bad room", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.RoomID = "a.b" }), 400, []string{"room_id"}},
		{"unknown room", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.RoomID = newRoomID(e.alice) }), 404, []string{"not found"}},
		{"no blob", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Blob = "" }), 400, []string{"blob is required"}},
		{"upper-case blob", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Blob = "AB" + blob[2:] }), 400, []string{"lowercase hex"}},
		{"short blob", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Blob = blob[:63] }), 400, []string{"63 characters"}},
		{"negative size", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Size = -1 }), 400, []string{"negative"}},
		{"over the limit", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Size = limit + 1 }), 413, []string{strconv.Itoa(limit + 1), "over the limit of " + strconv.Itoa(limit)}},
		{"far over the limit", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Size = 1 << 62 }), 413, []string{"over the limit"}},
		{"chunk over the chunk size", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Size, r.Data = limit, make([]byte, subjects.BlobChunkSize+1) }), 413, []string{"chunk size"}},
		{"negative index", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Index = -1 }), 400, []string{"out of range"}},
		{"index past the end", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Index = 1 }), 400, []string{"out of range", "chunks 0..0"}},
		{"short last chunk", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Data = content[1:] }), 400, []string{"must be 10 bytes", "got 9"}},
		{"short middle chunk", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Size = limit }), 400, []string{"chunk 0", "must be 524288 bytes"}},
		{"full last chunk of a smaller blob", e.alice, subjects.BlobsPut, put(func(r *subjects.BlobPutRequest) { r.Data = full }), 400, []string{"must be 10 bytes"}},
		{"non-member put", e.bob, subjects.BlobsPut, ok, 403, []string{"not a member of room " + room.RoomID}},
		{"non-member get", e.bob, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: blob}, 403, []string{"not a member"}},
		{"get of a blob never put", e.alice, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: blob}, 404, []string{blob}},
		{"get with a bad blob", e.alice, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: "x"}, 400, []string{"blob"}},
		{"get with unknown field", e.alice, subjects.BlobsGet, []byte(`{"room_id":"` + room.RoomID + `","blob":"` + blob + `","offset":1}`), 400, []string{`unknown field "offset"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.who.request(t, tc.subj, tc.body), tc.code, tc.want...)
		})
	}
	e.unchanged(t, before)
	if after := e.blobSeq(t); after != seq {
		t.Errorf("refused requests wrote to the blob store (sequence %d → %d)", seq, after)
	}

	// The limit is the configured one: a blob of exactly the limit goes in.
	big := randomBytes(t, limit)
	bigID := subjects.BlobID(big)
	for i := range subjects.BlobChunks(limit) {
		call[subjects.BlobInfo](t, e.alice, subjects.BlobsPut, putChunk(bigID, big, room, i))
	}
}

// TestBlobsDiscovery: "nats micro info unibus-blobs" documents both
// endpoints, and a blob chunk fits the put endpoint's limit.
func TestBlobsDiscovery(t *testing.T) {
	e := newEnv(t)
	subj, err := micro.ControlSubject(micro.InfoVerb, subjects.BlobsService, "")
	if err != nil {
		t.Fatal(err)
	}
	info := gather[micro.Info](t, e.admin.nc, subj, 1)[0]
	if info.Name != subjects.BlobsService || info.Version != testVersion || info.Description == "" {
		t.Errorf("info %s %s %q", info.Name, info.Version, info.Description)
	}
	var got []string
	for _, ep := range info.Endpoints {
		got = append(got, ep.Subject)
		for _, k := range []string{"summary", "access", "request", "response", "request_type", "response_type", "max_bytes"} {
			if ep.Metadata[k] == "" {
				t.Errorf("%s: no %s in metadata %v", ep.Subject, k, ep.Metadata)
			}
		}
		switch ep.Subject {
		case subjects.BlobsPut:
			const req = `{"room_id":"string","blob":"string","size":"integer","index":"integer","data?":"base64"}`
			if ep.Metadata["request"] != req || ep.Metadata["request_type"] != "subjects.BlobPutRequest" || ep.Metadata["response_type"] != "subjects.BlobInfo" {
				t.Errorf("put metadata %v", ep.Metadata)
			}
			limit, err := strconv.Atoi(ep.Metadata["max_bytes"])
			if err != nil {
				t.Fatal(err)
			}
			body, err := json.Marshal(subjects.BlobPutRequest{RoomID: newRoomID(e.alice), Blob: subjects.BlobID(nil), Size: subjects.MaxBlobSize, Index: subjects.MaxBlobChunks - 1, Data: make([]byte, subjects.BlobChunkSize)})
			if err != nil {
				t.Fatal(err)
			}
			if len(body) > limit {
				t.Errorf("a full chunk request is %d bytes, over the put limit %d", len(body), limit)
			}
		case subjects.BlobsGet:
			if ep.Metadata["request_type"] != "subjects.BlobGetRequest" || ep.Metadata["response_type"] != "subjects.BlobChunk" {
				t.Errorf("get metadata %v", ep.Metadata)
			}
		}
	}
	slices.Sort(got)
	if want := []string{subjects.BlobsGet, subjects.BlobsPut}; !slices.Equal(got, want) {
		t.Errorf("endpoints %v, want %v", got, want)
	}
	if e.svc.Blobs().Info().Name != subjects.BlobsService {
		t.Errorf("Services.Blobs is %q", e.svc.Blobs().Info().Name)
	}
}

// TestBlobsConfig: the blob limit and the bundle limit that carries
// chunks are validated.
func TestBlobsConfig(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := natstest.JetStream(t, srv.ClientURL())
	store, err := kvstore.Open(context.Background(), js, kvstore.Config{Replicas: 1, Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  svc.Config
	}{
		{"negative blob limit", svc.Config{Store: store, Conn: nc, MaxBlobBytes: -1}},
		{"blob limit over the protocol's", svc.Config{Store: store, Conn: nc, MaxBlobBytes: subjects.MaxBlobSize + 1}},
		{"bundle limit below a chunk", svc.Config{Store: store, Conn: nc, MaxBundleBytes: 512 << 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := svc.Start(context.Background(), tc.cfg)
			if !errors.Is(err, svc.ErrConfigValidation) {
				if s != nil {
					_ = s.Stop()
				}
				t.Fatalf("Start = %v, want ErrConfigValidation", err)
			}
		})
	}

	// The object store follows the store's buckets (memory here).
	s, err := svc.Start(context.Background(), svc.Config{Store: store, Conn: nc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	os, err := js.ObjectStore(context.Background(), kvstore.BucketBlobs)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Storage() != jetstream.MemoryStorage || st.Replicas() != 1 {
		t.Errorf("blob store on %s R%d, want memory R1 like the KV buckets", st.Storage(), st.Replicas())
	}
}
