package secretfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteNewAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "secret")
	if err := WriteNew(path, []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v; want 0600", info.Mode().Perm(), err)
	}
	if dir, _ := os.Stat(filepath.Dir(path)); dir.Mode().Perm() != 0o700 {
		t.Fatalf("parent mode = %v, want 0700", dir.Mode().Perm())
	}
	got, err := Read(path, 64)
	if err != nil || string(got) != "s3cret" {
		t.Fatalf("Read = %q, %v", got, err)
	}
	if err := WriteNew(path, []byte("other")); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite = %v, want fs.ErrExist", err)
	}
	if got, _ := Read(path, 64); string(got) != "s3cret" {
		t.Fatalf("content changed to %q", got)
	}
	if _, err := Read(path, 3); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Read over the bound = %v, want ErrTooLarge", err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path, 64); !errors.Is(err, ErrInsecurePermissions) {
		t.Fatalf("Read of a 0640 file = %v, want ErrInsecurePermissions", err)
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing"), 64); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read of a missing file = %v, want fs.ErrNotExist", err)
	}
}

// TestPublishRace covers the atomic no-overwrite step itself: a file that
// appears after WriteNew's early check must still not be replaced.
func TestPublishRace(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	path := filepath.Join(dir, "id.nk")
	if err := os.WriteFile(tmp, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := publish(tmp, path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("publish error = %v, want fs.ErrExist", err)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(content) != "old" {
		t.Errorf("content = %q, want the old content", content)
	}
}
