package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/nodetest"
)

// blobRoom is an encrypted room of alice's with bob as a member.
func blobRoom(t *testing.T, b *bus, alice, bob *client.Conn) subjects.RoomInfo {
	t.Helper()
	ctx := context.Background()
	room := roomWith(ctx, t, alice, "files", subjects.ModeE2E, bob)
	return room
}

// pattern is recognizable content of n bytes.
func pattern(n int) []byte {
	return bytes.Repeat([]byte("unibus secret blob "), n/19+1)[:n]
}

// progressLog records progress calls and checks that they advance.
type progressLog struct {
	t     *testing.T
	calls [][2]int64
}

func (p *progressLog) fn(done, total int64) {
	if n := len(p.calls); n > 0 && (done < p.calls[n-1][0] || total != p.calls[n-1][1]) {
		p.t.Errorf("progress went from %v to %d/%d", p.calls[n-1], done, total)
	}
	p.calls = append(p.calls, [2]int64{done, total})
}

// last is the last call, which must report completion.
func (p *progressLog) finished(t *testing.T) int64 {
	t.Helper()
	if len(p.calls) == 0 {
		t.Fatal("no progress reported")
	}
	last := p.calls[len(p.calls)-1]
	if last[0] != last[1] {
		t.Fatalf("progress ended at %d of %d", last[0], last[1])
	}
	return last[1]
}

// storedNames lists the live objects of a blob in the node's store (of
// every blob of the room when blob is ""): what an upload left behind.
func storedNames(t *testing.T, b *bus, roomID, blob string) []string {
	t.Helper()
	return nodetest.Blobs(t, b.Node).Objects(roomID, blob)
}

func TestBlobsEncryptedRoundTrip(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := blobRoom(t, b, alice, bob)

	for _, size := range []int{0, 1 << 10, 5 << 20} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			content := pattern(size)
			up := &progressLog{t: t}
			ref, err := alice.PutBlob(ctx, room.RoomID, bytes.NewReader(content), up.fn)
			if err != nil {
				t.Fatalf("put: %v", err)
			}
			stored := up.finished(t)
			if ref.RoomID != room.RoomID || ref.Epoch != room.Epoch || ref.Size != int64(size) || subjects.ValidateBlobID(ref.Blob) != nil {
				t.Fatalf("ref %+v", ref)
			}
			// Sealed: a header, then 16 bytes of tag per 64 KiB segment.
			if segments := int64(max(1, (size+65535)/65536)); stored != int64(size)+44+16*segments {
				t.Errorf("stored %d bytes for %d of content", stored, size)
			}
			if want := subjects.BlobChunks(stored); size == 5<<20 && (want < 3 || len(up.calls) != want) {
				t.Errorf("%d progress calls for %d chunks", len(up.calls), want)
			}

			// Another member, who did not upload it, reads it from the
			// reference alone (sent as JSON in a message).
			wire, err := json.Marshal(ref)
			if err != nil {
				t.Fatal(err)
			}
			var got client.BlobRef
			if err := json.Unmarshal(wire, &got); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			down := &progressLog{t: t}
			if err := bob.GetBlob(ctx, got.RoomID, got.Blob, &out, down.fn); err != nil {
				t.Fatalf("get: %v", err)
			}
			if !bytes.Equal(out.Bytes(), content) {
				t.Fatalf("bob read %d bytes, not the %d alice put", out.Len(), size)
			}
			if total := down.finished(t); total != stored {
				t.Errorf("download of %d bytes, upload of %d", total, stored)
			}

			// The store holds ciphertext whose hash is the blob's ID.
			sum := sha256.New()
			blobs := nodetest.Blobs(t, b.Node)
			for i := range subjects.BlobChunks(stored) {
				data := blobs.Chunk(room.RoomID, ref.Blob, i)
				if size > 0 && bytes.Contains(data, []byte("secret blob")) {
					t.Fatalf("chunk %d holds plaintext", i)
				}
				sum.Write(data)
			}
			if hex.EncodeToString(sum.Sum(nil)) != ref.Blob {
				t.Error("the blob ID is not the SHA-256 of what is stored")
			}
		})
	}

	t.Run("from a reader that cannot seek", func(t *testing.T) {
		content := pattern(100 << 10)
		ref, err := alice.PutBlob(ctx, room.RoomID, io.MultiReader(bytes.NewReader(content)), nil)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := alice.GetBlob(ctx, room.RoomID, ref.Blob, &out, nil); err != nil || !bytes.Equal(out.Bytes(), content) {
			t.Fatalf("get: %v (%d bytes)", err, out.Len())
		}
	})

	t.Run("from the middle of a file", func(t *testing.T) {
		f, err := os.CreateTemp(t.TempDir(), "blob")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		content := pattern(700 << 10)
		if _, err := f.Write(append([]byte("skip"), content...)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(4, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		ref, err := alice.PutBlob(ctx, room.RoomID, f, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := bob.GetBlob(ctx, room.RoomID, ref.Blob, &out, nil); err != nil || !bytes.Equal(out.Bytes(), content) {
			t.Fatalf("get: %v (%d bytes)", err, out.Len())
		}
	})
}

// TestBlobsAfterRekey: a blob is sealed with the current epoch's key, and
// one sealed before a rekey still opens for members who hold that epoch.
func TestBlobsAfterRekey(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := blobRoom(t, b, alice, bob)
	old, err := alice.PutBlob(ctx, room.RoomID, bytes.NewReader([]byte("before")), nil)
	if err != nil {
		t.Fatal(err)
	}
	rekeyed, err := alice.Rekey(ctx, room.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := bob.PutBlob(ctx, room.RoomID, bytes.NewReader([]byte("after")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if ref.Epoch != rekeyed.Epoch || old.Epoch != room.Epoch || ref.Epoch == old.Epoch {
		t.Fatalf("epochs: before %d, after %d, room %d → %d", old.Epoch, ref.Epoch, room.Epoch, rekeyed.Epoch)
	}
	for _, tc := range []struct {
		ref  client.BlobRef
		want string
	}{{old, "before"}, {ref, "after"}} {
		for _, c := range []*client.Conn{alice, bob} {
			var out bytes.Buffer
			if err := c.GetBlob(ctx, room.RoomID, tc.ref.Blob, &out, nil); err != nil || out.String() != tc.want {
				t.Errorf("get %q: %q, %v", tc.want, out.String(), err)
			}
		}
	}
}

func TestBlobsCleartextRoom(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := roomWith(ctx, t, alice, "public", subjects.ModeCleartext, bob)
	content := pattern(1<<20 + 3)
	ref, err := alice.PutBlob(ctx, room.RoomID, bytes.NewReader(content), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Stored as is: the ID is what sha256sum prints for the file.
	if ref.Blob != subjects.BlobID(content) || ref.Epoch != 0 || ref.Size != int64(len(content)) {
		t.Fatalf("ref %+v", ref)
	}
	var out bytes.Buffer
	if err := bob.GetBlob(ctx, room.RoomID, ref.Blob, &out, nil); err != nil || !bytes.Equal(out.Bytes(), content) {
		t.Fatalf("get: %v (%d bytes)", err, out.Len())
	}

	// The same content again is complete after its first chunk.
	up := &progressLog{t: t}
	again, err := bob.PutBlob(ctx, room.RoomID, bytes.NewReader(content), up.fn)
	if err != nil || again != ref {
		t.Fatalf("put again: %+v, %v", again, err)
	}
	if len(up.calls) != 1 {
		t.Errorf("%d chunks sent for a blob already stored, want 1", len(up.calls))
	}
}

func TestBlobsMembersOnly(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	mallory := b.peer(t, "mallory")
	room := blobRoom(t, b, alice, bob)
	ref, err := alice.PutBlob(ctx, room.RoomID, bytes.NewReader(pattern(1000)), nil)
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := mallory.GetBlob(ctx, room.RoomID, ref.Blob, &out, nil); !errors.Is(err, client.ErrForbidden) || out.Len() != 0 {
		t.Fatalf("non-member get: %v (%d bytes), want ErrForbidden", err, out.Len())
	}
	if _, err := mallory.PutBlob(ctx, room.RoomID, bytes.NewReader([]byte("spam")), nil); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("non-member put: %v, want ErrForbidden", err)
	}
	// Past the client's own checks, straight to the service: refused too.
	content := []byte("spam")
	blob := subjects.BlobID(content)
	r := rawRequest(t, mallory, subjects.BlobsPut, subjects.BlobPutRequest{RoomID: room.RoomID, Blob: blob, Size: 4, Data: content})
	wantCode(t, r, subjects.CodeForbidden, "not a member of room "+room.RoomID)
	r = rawRequest(t, mallory, subjects.BlobsGet, subjects.BlobGetRequest{RoomID: room.RoomID, Blob: ref.Blob})
	wantCode(t, r, subjects.CodeForbidden, "not a member")
	if names := storedNames(t, b, room.RoomID, blob); len(names) != 0 {
		t.Errorf("a non-member's put stored %v", names)
	}
}

// rawRequest sends a signed request as c's identity, bypassing the client
// API, and returns the reply.
func rawRequest(t *testing.T, c *client.Conn, subject string, body any) *nats.Msg {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	h, err := subjects.SignRequest(c.Identity().KeyPair(), subject, data, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.NATS().RequestMsg(&nats.Msg{Subject: subject, Header: h, Data: data}, 10*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	return r
}

// wantCode checks an error reply's code and message.
func wantCode(t *testing.T, r *nats.Msg, code int, want string) {
	t.Helper()
	if got := r.Header.Get(micro.ErrorCodeHeader); got != strconv.Itoa(code) || !strings.Contains(r.Header.Get(micro.ErrorHeader), want) {
		t.Fatalf("reply %s %q, want %d %q", got, r.Header.Get(micro.ErrorHeader), code, want)
	}
}

func TestBlobsCorruptionDetected(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := blobRoom(t, b, alice, bob)
	cleartext, err := alice.CreateRoom(ctx, "public", subjects.ModeCleartext)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		room    string
		size    int
		chunk   int
		decrypt bool // caught by the AEAD before the hash is complete
	}{
		// The hash catches it before the (only) segment is opened.
		{"encrypted, one chunk", room.RoomID, 1 << 10, 0, false},
		{"encrypted, first of three chunks", room.RoomID, 1<<20 + 1, 0, true},
		{"encrypted, last of three chunks", room.RoomID, 1<<20 + 1, 2, false},
		{"cleartext, middle chunk", cleartext.RoomID, 1<<20 + 1, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref, err := alice.PutBlob(ctx, tc.room, bytes.NewReader(pattern(tc.size)), nil)
			if err != nil {
				t.Fatal(err)
			}
			// Someone with access to the store (not to the room key)
			// changes one byte of a chunk.
			blobs := nodetest.Blobs(t, b.Node)
			data := blobs.Chunk(tc.room, ref.Blob, tc.chunk)
			data[len(data)/2] ^= 0x01
			blobs.SetChunk(tc.room, ref.Blob, tc.chunk, data)
			var out bytes.Buffer
			err = alice.GetBlob(ctx, tc.room, ref.Blob, &out, nil)
			if !errors.Is(err, client.ErrBlobCorrupt) || errors.Is(err, e2e.ErrDecrypt) != tc.decrypt {
				t.Fatalf("get of a tampered blob: %v, want ErrBlobCorrupt (and e2e.ErrDecrypt: %t)", err, tc.decrypt)
			}
			if tc.room == room.RoomID && out.Len() == tc.size {
				t.Error("the whole content was written although the blob is corrupt")
			}
		})
	}
}

func TestBlobsServerRefusesMismatch(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := blobRoom(t, b, alice, bob)

	content := pattern(subjects.BlobChunkSize + 100)
	blob := subjects.BlobID(append(bytes.Clone(content), '!'))
	size := int64(len(content))
	first := rawRequest(t, alice, subjects.BlobsPut, subjects.BlobPutRequest{RoomID: room.RoomID, Blob: blob, Size: size, Index: 0, Data: content[:subjects.BlobChunkSize]})
	if code := first.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("first chunk refused: %s %s", code, first.Header.Get(micro.ErrorHeader))
	}
	if names := storedNames(t, b, room.RoomID, blob); len(names) != 1 {
		t.Fatalf("stored after chunk 0: %v", names)
	}
	last := rawRequest(t, alice, subjects.BlobsPut, subjects.BlobPutRequest{RoomID: room.RoomID, Blob: blob, Size: size, Index: 1, Data: content[subjects.BlobChunkSize:]})
	wantCode(t, last, subjects.CodeBadRequest, "does not match its hash")
	if names := storedNames(t, b, room.RoomID, blob); len(names) != 0 {
		t.Errorf("stored after the mismatch: %v", names)
	}
	var out bytes.Buffer
	if err := bob.GetBlob(ctx, room.RoomID, blob, &out, nil); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("get of the refused blob: %v, want ErrNotFound", err)
	}
}

// fickle reads different content after it is rewound, like a file
// rewritten during an upload.
type fickle struct {
	*bytes.Reader
	content []byte
	rewinds int
}

func (f *fickle) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekStart {
		if f.rewinds++; f.rewinds == 1 {
			changed := bytes.Clone(f.content)
			changed[len(changed)-1] ^= 1
			f.Reader = bytes.NewReader(changed)
		}
	}
	return f.Reader.Seek(off, whence)
}

func TestBlobsContentChangedDuringUpload(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := blobRoom(t, b, alice, bob)
	content := pattern(subjects.BlobChunkSize + 1000)
	_, err := alice.PutBlob(ctx, room.RoomID, &fickle{Reader: bytes.NewReader(content), content: content}, nil)
	if !errors.Is(err, client.ErrBadRequest) || !strings.Contains(err.Error(), "changed while it was uploaded") {
		t.Fatalf("put of changing content: %v, want a 400 about the change", err)
	}
	if names := storedNames(t, b, room.RoomID, ""); len(names) != 0 {
		t.Errorf("stored: %v", names)
	}
}

// zeros is an endless source of zero bytes.
type zeros struct{}

func (zeros) ReadAt(p []byte, _ int64) (int, error) {
	clear(p)
	return len(p), nil
}

func TestBlobsOverSize(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	alice, bob := b.peer(t, "alice"), b.peer(t, "bob")
	room := blobRoom(t, b, alice, bob)

	// Exactly the limit of content: sealing adds a little, which is over.
	r := io.NewSectionReader(zeros{}, 0, svc.DefaultMaxBlobBytes)
	up := &progressLog{t: t}
	_, err := alice.PutBlob(ctx, room.RoomID, r, up.fn)
	if !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("put over the limit: %v, want ErrTooLarge", err)
	}
	if len(up.calls) != 0 {
		t.Errorf("progress reported for a refused blob: %v", up.calls)
	}
	if names := storedNames(t, b, room.RoomID, ""); len(names) != 0 {
		t.Errorf("stored: %v", names)
	}
}

// A member shares a file: the blob goes to the store, sealed, and its
// reference goes to the room in a message; any member fetches it.
func ExampleConn_PutBlob() {
	ctx := context.Background()
	var c *client.Conn // from client.Connect
	f, err := os.Open("report.pdf")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	ref, err := c.PutBlob(ctx, "ROOM-ID", f, func(done, total int64) { log.Printf("%d/%d", done, total) })
	if err != nil {
		log.Fatal(err)
	}
	msg, err := json.Marshal(ref)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Publish(ctx, ref.RoomID, msg); err != nil {
		log.Fatal(err)
	}
}

// A member who received a reference fetches the blob into a file: the
// content is checked against its ID and opened with the room key.
func ExampleConn_GetBlob() {
	ctx := context.Background()
	var c *client.Conn   // from client.Connect
	var m client.Message // from a Subscribe handler
	var ref client.BlobRef
	if err := json.Unmarshal(m.Data, &ref); err != nil {
		log.Fatal(err)
	}
	f, err := os.Create("report.pdf")
	if err != nil {
		log.Fatal(err)
	}
	if err := c.GetBlob(ctx, ref.RoomID, ref.Blob, f, nil); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name()) // incomplete or corrupt
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}
