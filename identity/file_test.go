package identity

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "home", ".unibus")
	path := filepath.Join(dir, "id.nk")
	if err := Save(path, id); err != nil {
		t.Fatalf("Save: %v", err)
	}

	seed, err := id.Seed()
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read seed file: %v", err)
	}
	if want := append(bytes.Clone(seed), '\n'); !bytes.Equal(content, want) {
		t.Errorf("file content = %q, want the bare seed and a newline", content)
	}

	if runtime.GOOS != "windows" {
		assertMode(t, path, 0o600)
		assertMode(t, dir, 0o700)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read dir: %v", err)
	}
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries, want only the seed file (temporary file left behind?)", len(entries))
	}

	loaded, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if loaded.PublicKey() != id.PublicKey() {
		t.Errorf("loaded PublicKey = %s, want %s", loaded.PublicKey(), id.PublicKey())
	}
	msg := []byte("round trip")
	sig, err := loaded.Sign(msg)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := id.KeyPair().Verify(msg, sig); err != nil {
		t.Errorf("loaded identity's signature does not verify with the original: %v", err)
	}
}

// TestSavedFileWorksWithNats proves that `nats --nkey FILE` accepts a file
// written by Save: nats.NkeyOptionFromSeed is what the nats CLI calls.
func TestSavedFileWorksWithNats(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	path := filepath.Join(t.TempDir(), "id.nk")
	if err := Save(path, id); err != nil {
		t.Fatalf("Save: %v", err)
	}

	opt, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		t.Fatalf("NkeyOptionFromSeed: %v", err)
	}
	var opts nats.Options
	if err := opt(&opts); err != nil {
		t.Fatalf("apply option: %v", err)
	}
	if opts.Nkey != id.PublicKey() {
		t.Errorf("nats.go Nkey = %s, want %s", opts.Nkey, id.PublicKey())
	}
	nonce := []byte("server nonce")
	sig, err := opts.SignatureCB(nonce)
	if err != nil {
		t.Fatalf("nats.go SignatureCB: %v", err)
	}
	if err := id.KeyPair().Verify(nonce, sig); err != nil {
		t.Errorf("nats.go's signature does not verify with the identity: %v", err)
	}
}

func TestLoadPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no unix permission bits")
	}
	id, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	seed, err := id.Seed()
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}

	tests := []struct {
		mode fs.FileMode
		want error
	}{
		{mode: 0o600},
		{mode: 0o400},
		{mode: 0o700},
		{mode: 0o644, want: ErrInsecurePermissions},
		{mode: 0o640, want: ErrInsecurePermissions},
		{mode: 0o604, want: ErrInsecurePermissions},
		{mode: 0o660, want: ErrInsecurePermissions},
		{mode: 0o620, want: ErrInsecurePermissions},
		{mode: 0o602, want: ErrInsecurePermissions},
		{mode: 0o601, want: ErrInsecurePermissions},
		{mode: 0o610, want: ErrInsecurePermissions},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%04o", tt.mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "id.nk")
			if err := os.WriteFile(path, append(bytes.Clone(seed), '\n'), 0o600); err != nil {
				t.Fatalf("write seed file: %v", err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatalf("chmod: %v", err)
			}

			got, err := Load(path)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if got.PublicKey() != id.PublicKey() {
					t.Errorf("PublicKey = %s, want %s", got.PublicKey(), id.PublicKey())
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Load error = %v, want %v", err, tt.want)
			}
			msg := err.Error()
			for _, want := range []string{path, fmt.Sprintf("%04o", tt.mode), "chmod 600 " + path} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	account := seedOf(t, nkeys.CreateAccount)
	tests := []struct {
		name    string
		content []byte // nil: no file
		want    error
	}{
		{name: "missing file", want: fs.ErrNotExist},
		{name: "empty file", content: []byte{}, want: ErrMalformedSeed},
		{name: "garbage", content: []byte("not a seed\n"), want: ErrMalformedSeed},
		{name: "account seed", content: append(account, '\n'), want: ErrNotUserSeed},
		{name: "too large", content: bytes.Repeat([]byte("#"), maxFileSize+1), want: ErrMalformedSeed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "id.nk")
			if tt.content != nil {
				if err := os.WriteFile(path, tt.content, 0o600); err != nil {
					t.Fatalf("write file: %v", err)
				}
			}
			_, err := Load(path)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Load error = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestSaveRefusesToOverwrite(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	dir := t.TempDir()
	original := []byte("original content\n")

	tests := []struct {
		name  string
		setup func(t *testing.T, path string)
	}{
		{name: "file", setup: func(t *testing.T, path string) {
			if err := os.WriteFile(path, original, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "dangling symlink", setup: func(t *testing.T, path string) {
			if runtime.GOOS == "windows" {
				t.Skip("symlinks need privileges on Windows")
			}
			if err := os.Symlink(filepath.Join(dir, "nowhere"), path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := filepath.Join(dir, tt.name)
			if err := os.Mkdir(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(sub, "id.nk")
			tt.setup(t, path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}

			err = Save(path, id)
			if !errors.Is(err, ErrExists) {
				t.Fatalf("Save error = %v, want ErrExists", err)
			}
			if !errors.Is(err, fs.ErrExist) {
				t.Errorf("Save error = %v, want it to match fs.ErrExist too", err)
			}

			after, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(before, after) || before.Mode() != after.Mode() || before.Size() != after.Size() {
				t.Errorf("existing entry changed")
			}
			if before.Mode().IsRegular() {
				content, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(content, original) {
					t.Errorf("existing file content = %q, want %q", content, original)
				}
			}
			entries, err := os.ReadDir(sub)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("dir holds %d entries, want 1 (temporary file left behind?)", len(entries))
			}
		})
	}
}

func TestSaveNil(t *testing.T) {
	if err := Save(filepath.Join(t.TempDir(), "id.nk"), nil); err == nil {
		t.Fatal("Save(nil) succeeded")
	}
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat: %v", err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %04o, want %04o", path, got, want)
	}
}
