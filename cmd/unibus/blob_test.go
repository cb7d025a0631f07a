package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/tests/nodetest"
	"github.com/unibus/unibus/tests/testio"
)

func TestBlobPutGet(t *testing.T) {
	n, ca := nodetest.RunTLS(t)
	c := cli{server: n.ClientURL(), ca: ca}
	dir := t.TempDir()
	alice := saveIdentity(t, dir, "alice", nodetest.AddUser(t, n, "alice", false))
	carol := saveIdentity(t, dir, "carol", nodetest.AddUser(t, n, "carol", false))

	r := c.run(t, alice, "rooms", "create", "files")
	roomID := strings.TrimSpace(r.stdout)
	if r.code != exitcode.OK || roomID == "" {
		t.Fatalf("rooms create: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// 1.5 MiB: several chunks of the blobs service.
	content := make([]byte, 3<<19)
	for i := range content {
		content[i] = byte(i*7 + i/1000)
	}
	in := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(in, content, 0o600); err != nil {
		t.Fatal(err)
	}
	r = c.run(t, alice, "blob", "put", "files", in)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != exitcode.OK || len(lines) != 2 {
		t.Fatalf("blob put: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r.stderr != "" {
		t.Fatalf("blob put drew on a stderr that is not a terminal: %q", r.stderr)
	}
	var ref client.BlobRef
	if err := json.Unmarshal([]byte(lines[1]), &ref); err != nil {
		t.Fatalf("second line is not a BlobRef: %q: %v", lines[1], err)
	}
	blobID := lines[0]
	if ref.Blob != blobID || ref.RoomID != roomID || ref.Size != int64(len(content)) || ref.Epoch != 1 {
		t.Fatalf("blob ref %+v, blob ID %q, room %s", ref, blobID, roomID)
	}

	// To a file.
	out := filepath.Join(dir, "out.bin")
	if r := c.run(t, alice, "blob", "get", roomID, blobID, "-o", out); r.code != exitcode.OK {
		t.Fatalf("blob get -o: code %d, stderr %q", r.code, r.stderr)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, content) {
		t.Fatalf("fetched file differs (%d bytes, want %d; %v)", len(got), len(content), err)
	}

	// No overwrite without --force; the file stays as it was.
	if err := os.WriteFile(out, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = c.run(t, alice, "blob", "get", roomID, blobID, "-o", out)
	if r.code == exitcode.OK || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("blob get over an existing file: code %d, stderr %q", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(out); string(got) != "keep me" {
		t.Fatalf("existing file changed to %d bytes", len(got))
	}
	if r := c.run(t, alice, "blob", "get", roomID, blobID, "-o", out, "--force"); r.code != exitcode.OK {
		t.Fatalf("blob get --force: code %d, stderr %q", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, content) {
		t.Fatalf("file not overwritten with --force (%d bytes)", len(got))
	}

	// From standard input, to standard output.
	var stdout, stderr testio.Buffer
	code := c.runTo(t, &stdout, &stderr, strings.NewReader("small blob\n"), alice, "blob", "put", roomID, "-")
	if code != exitcode.OK {
		t.Fatalf("blob put -: code %d, stderr %q", code, stderr.String())
	}
	small, _, _ := strings.Cut(stdout.String(), "\n")
	r = c.run(t, alice, "blob", "get", "files", small)
	if r.code != exitcode.OK || r.stdout != "small blob\n" {
		t.Fatalf("blob get to stdout: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// A corrupt last chunk: nothing of the blob reaches the file or
	// standard output (the first chunks verify, the whole does not), and
	// the file that --force would replace is left as it was.
	store := nodetest.Blobs(t, n)
	chunks := len(store.Objects(roomID, blobID)) - 1 // the manifest aside
	last := store.Chunk(roomID, blobID, chunks-1)
	last[len(last)-1] ^= 1
	store.SetChunk(roomID, blobID, chunks-1, last)
	if err := os.WriteFile(out, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = c.run(t, alice, "blob", "get", roomID, blobID, "-o", out, "--force")
	if r.code == exitcode.OK {
		t.Fatal("a corrupt blob was fetched")
	}
	if got, _ := os.ReadFile(out); string(got) != "keep me" {
		t.Fatalf("a failed --force download changed the file to %d bytes", len(got))
	}
	r = c.run(t, alice, "blob", "get", roomID, blobID, "-o", "-")
	if r.code == exitcode.OK || r.stdout != "" {
		t.Fatalf("a corrupt blob to standard output: code %d, %d bytes written", r.code, len(r.stdout))
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".unibus-blob-*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}

	// A non-member is refused, and no file is left behind.
	denied := filepath.Join(dir, "denied.bin")
	r = c.run(t, carol, "blob", "get", roomID, blobID, "-o", denied)
	if r.code != exitcode.Refused {
		t.Fatalf("non-member blob get: code %d, want %d; stderr %q", r.code, exitcode.Refused, r.stderr)
	}
	if _, err := os.Stat(denied); !os.IsNotExist(err) {
		t.Fatalf("output file after a refused get: %v", err)
	}

	// A missing file is named in a clear error.
	missing := filepath.Join(dir, "no-such.bin")
	r = c.run(t, alice, "blob", "put", roomID, missing)
	if r.code != exitcode.Error || !strings.Contains(r.stderr, missing) || !strings.Contains(r.stderr, "no such file") {
		t.Fatalf("blob put of a missing file: code %d, stderr %q", r.code, r.stderr)
	}

	// Malformed arguments are usage errors.
	for _, args := range [][]string{
		{"blob", "get", roomID, "not-a-blob-id"},
		{"blob", "put", roomID},
		{"blob", "put", roomID, dir},
	} {
		if r := c.run(t, alice, args...); r.code != exitcode.Usage {
			t.Errorf("%q: code %d, want %d; stderr %q", args, r.code, exitcode.Usage, r.stderr)
		}
	}
}

func TestProgressLine(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		want        string
	}{
		{0, 5 << 20, "[>                             ]   0% 0.0/5.0 MiB"},
		{2202010, 5 << 20, "[============>                 ]  42% 2.1/5.0 MiB"},
		{5 << 20, 5 << 20, "[==============================] 100% 5.0/5.0 MiB"},
		{512, 1000, "[===============>              ]  51% 512/1000 B"},
		{1 << 10, 3 << 10, "[==========>                   ]  33% 1.0/3.0 KiB"},
		{0, 0, "[==============================] 100% 0/0 B"},
	} {
		if got := progressLine(tc.done, tc.total); got != tc.want {
			t.Errorf("progressLine(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
	var buf bytes.Buffer
	p := &progressBar{w: &buf}
	p.update(1, 2)
	p.update(1, 2) // unchanged: not redrawn
	p.finish()
	if got := buf.String(); strings.Count(got, "\r") != 1 || !strings.HasSuffix(got, "\n") {
		t.Fatalf("bar output %q", got)
	}
	if (&app{Stderr: &buf}).progressBar(false) != nil {
		t.Fatal("a bar on a writer that is not a terminal")
	}
	var none *progressBar
	none.update(1, 2)
	none.finish()
}
