package e2e

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
)

func TestEncryptionKeyMarshalRoundTrip(t *testing.T) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	if got := len(k.PublicKey()); got != PublicKeySize {
		t.Fatalf("public key is %d bytes, want %d", got, PublicKeySize)
	}
	if err := ValidatePublicKey(k.PublicKey()); err != nil {
		t.Fatalf("ValidatePublicKey(own key): %v", err)
	}
	text, err := k.MarshalPrivate()
	if err != nil {
		t.Fatalf("MarshalPrivate: %v", err)
	}
	if !bytes.HasPrefix(text, []byte("unibus-enc-secret-v1:")) || len(text) != len("unibus-enc-secret-v1:")+43 {
		t.Fatalf("MarshalPrivate = %q, want the prefix and 43 base64url characters", text)
	}
	parsed, err := ParseEncryptionKey(append(bytes.Clone(text), '\n'))
	if err != nil {
		t.Fatalf("ParseEncryptionKey: %v", err)
	}
	if !bytes.Equal(parsed.PublicKey(), k.PublicKey()) {
		t.Error("parsed key has another public key")
	}
	if strings.Contains(k.String(), string(text[len(privatePrefix):])) {
		t.Error("String reveals the private key")
	}

	// The parsed key opens what was sealed to the original.
	roomKey := NewRoomKey()
	pub := newIdentity(t).PublicKey()
	sealed, err := SealRoomKey(k.PublicKey(), testRoom, 1, pub, roomKey)
	if err != nil {
		t.Fatalf("SealRoomKey: %v", err)
	}
	got, err := OpenRoomKey(parsed, testRoom, 1, pub, sealed)
	if err != nil {
		t.Fatalf("OpenRoomKey with the parsed key: %v", err)
	}
	if !bytes.Equal(got, roomKey) {
		t.Error("parsed key opened another room key")
	}
}

func TestPublicKeyDoesNotAlias(t *testing.T) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	p := k.PublicKey()
	clear(p)
	if bytes.Equal(k.PublicKey(), p) {
		t.Error("clearing the returned public key changed the key")
	}
}

func TestParseEncryptionKeyErrors(t *testing.T) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	good, err := k.MarshalPrivate()
	if err != nil {
		t.Fatalf("MarshalPrivate: %v", err)
	}
	secret := string(good[len(privatePrefix):])
	tests := []struct {
		name  string
		input string
	}{
		{"empty", ""},
		{"no prefix", secret},
		{"other prefix", "unibus-enc-secret-v2:" + secret},
		{"nkey seed", "SU" + strings.Repeat("A", 56)},
		{"short", privatePrefix + secret[:42]},
		{"long", privatePrefix + secret + "A"},
		{"padded", privatePrefix + secret + "="},
		{"std alphabet", privatePrefix + strings.NewReplacer("-", "+", "_", "/").Replace(secret) + "+"},
		{"non-canonical trailing bits", privatePrefix + secret[:42] + "B"},
		{"space inside", privatePrefix + secret[:20] + " " + secret[20:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEncryptionKey([]byte(tt.input))
			if !errors.Is(err, ErrInvalidEncryptionKey) {
				t.Fatalf("ParseEncryptionKey(%q) = %v, want ErrInvalidEncryptionKey", tt.input, err)
			}
			if strings.Contains(err.Error(), secret[:20]) {
				t.Errorf("error %q repeats the key", err)
			}
		})
	}
}

func TestValidatePublicKey(t *testing.T) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	pub := k.PublicKey()
	badML := bytes.Clone(pub)
	// Coefficients of an ML-KEM encapsulation key are 12-bit values below
	// q = 3329; 0xfff is out of range.
	badML[0], badML[1] = 0xff, 0x0f
	for name, p := range map[string][]byte{
		"nil":        nil,
		"short":      pub[:len(pub)-1],
		"long":       append(bytes.Clone(pub), 0),
		"bad ML-KEM": badML,
	} {
		if err := ValidatePublicKey(p); !errors.Is(err, ErrInvalidEncryptionKey) {
			t.Errorf("ValidatePublicKey(%s) = %v, want ErrInvalidEncryptionKey", name, err)
		}
	}
}

func TestEncryptionKeyWipe(t *testing.T) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	pub := newIdentity(t).PublicKey()
	sealed, err := SealRoomKey(k.PublicKey(), testRoom, 1, pub, NewRoomKey())
	if err != nil {
		t.Fatalf("SealRoomKey: %v", err)
	}
	seed := k.seed
	k.Wipe()
	k.Wipe() // idempotent
	if !bytes.Equal(seed, make([]byte, seedSize)) {
		t.Error("Wipe left the seed in memory")
	}
	if _, err := k.MarshalPrivate(); !errors.Is(err, ErrWiped) {
		t.Errorf("MarshalPrivate after Wipe = %v, want ErrWiped", err)
	}
	if _, err := OpenRoomKey(k, testRoom, 1, pub, sealed); !errors.Is(err, ErrWiped) {
		t.Errorf("OpenRoomKey after Wipe = %v, want ErrWiped", err)
	}
	if len(k.PublicKey()) != PublicKeySize {
		t.Error("PublicKey unavailable after Wipe")
	}
}

func TestSaveLoadEncryptionKey(t *testing.T) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "home", ".unibus")
	path := filepath.Join(dir, "id.enc")
	if err := SaveEncryptionKey(path, k); err != nil {
		t.Fatalf("SaveEncryptionKey: %v", err)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read key file: %v", err)
	}
	text, err := k.MarshalPrivate()
	if err != nil {
		t.Fatalf("MarshalPrivate: %v", err)
	}
	if want := append(text, '\n'); !bytes.Equal(content, want) {
		t.Errorf("file content = %q, want the text form and a newline", content)
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
		t.Errorf("dir holds %d entries, want only the key file", len(entries))
	}
	loaded, err := LoadEncryptionKey(path)
	if err != nil {
		t.Fatalf("LoadEncryptionKey: %v", err)
	}
	if !bytes.Equal(loaded.PublicKey(), k.PublicKey()) {
		t.Error("loaded key has another public key")
	}

	// Never overwrite.
	other, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	err = SaveEncryptionKey(path, other)
	if !errors.Is(err, ErrExists) || !errors.Is(err, fs.ErrExist) {
		t.Fatalf("SaveEncryptionKey over an existing file = %v, want ErrExists and fs.ErrExist", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read key file: %v", err)
	}
	if !bytes.Equal(after, content) {
		t.Error("refused save changed the file")
	}
}

func TestLoadEncryptionKeyPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no unix permission bits")
	}
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	text, err := k.MarshalPrivate()
	if err != nil {
		t.Fatalf("MarshalPrivate: %v", err)
	}
	tests := []struct {
		mode fs.FileMode
		want error
	}{
		{mode: 0o600},
		{mode: 0o400},
		{mode: 0o644, want: ErrInsecurePermissions},
		{mode: 0o640, want: ErrInsecurePermissions},
		{mode: 0o604, want: ErrInsecurePermissions},
		{mode: 0o620, want: ErrInsecurePermissions},
		{mode: 0o602, want: ErrInsecurePermissions},
		{mode: 0o610, want: ErrInsecurePermissions},
		{mode: 0o601, want: ErrInsecurePermissions},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%04o", tt.mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "id.enc")
			if err := os.WriteFile(path, append(bytes.Clone(text), '\n'), 0o600); err != nil {
				t.Fatalf("write key file: %v", err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatalf("chmod: %v", err)
			}
			got, err := LoadEncryptionKey(path)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("LoadEncryptionKey: %v", err)
				}
				if !bytes.Equal(got.PublicKey(), k.PublicKey()) {
					t.Error("loaded another key")
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("LoadEncryptionKey = %v, want %v", err, tt.want)
			}
			for _, want := range []string{path, fmt.Sprintf("%04o", tt.mode), "chmod 600 " + path} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestLoadEncryptionKeyErrors(t *testing.T) {
	tests := []struct {
		name    string
		content []byte // nil: no file
		want    error
	}{
		{name: "missing file", want: fs.ErrNotExist},
		{name: "empty file", content: []byte{}, want: ErrInvalidEncryptionKey},
		{name: "garbage", content: []byte("not a key\n"), want: ErrInvalidEncryptionKey},
		{name: "too large", content: bytes.Repeat([]byte("#"), maxKeyFileSize+1), want: ErrInvalidEncryptionKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "id.enc")
			if tt.content != nil {
				if err := os.WriteFile(path, tt.content, 0o600); err != nil {
					t.Fatalf("write file: %v", err)
				}
			}
			_, err := LoadEncryptionKey(path)
			if !errors.Is(err, tt.want) {
				t.Fatalf("LoadEncryptionKey = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	if got := info.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %04o, want %04o", path, got, want)
	}
}
