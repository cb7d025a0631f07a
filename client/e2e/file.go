package e2e

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// insecureBits are the mode bits a key file must not have.
const insecureBits fs.FileMode = 0o077

// maxKeyFileSize bounds what LoadEncryptionKey reads: a key file is one line
// of about 65 bytes.
const maxKeyFileSize = 4 << 10

// SaveEncryptionKey writes k's private key to a new file at path, mode 0600:
// the text form of [EncryptionKey.MarshalPrivate] and a newline. It creates
// missing parent directories with mode 0700.
//
// It never overwrites: if path exists it fails with [ErrExists] (which also
// matches [fs.ErrExist]) and leaves the file untouched. The write is atomic:
// the key goes to a temporary file in the same directory, which is then
// hard-linked to path, so a crash never leaves a partial key file at path.
func SaveEncryptionKey(path string, k *EncryptionKey) error {
	if k == nil {
		return errors.New("save encryption key: nil key")
	}
	text, err := k.MarshalPrivate()
	if err != nil {
		return fmt.Errorf("save encryption key: %w", err)
	}
	content := make([]byte, len(text)+1)
	copy(content, text)
	content[len(text)] = '\n'
	clear(text)
	defer clear(content)

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save encryption key: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("save encryption key %s: %w: %w", path, ErrExists, fs.ErrExist)
	}
	tmp, err := writeTemp(dir, filepath.Base(path), content)
	if err != nil {
		return fmt.Errorf("save encryption key: %w", err)
	}
	defer os.Remove(tmp)

	if err := publish(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("save encryption key %s: %w: %w", path, ErrExists, err)
		}
		return fmt.Errorf("save encryption key: %w", err)
	}
	syncDir(dir)
	return nil
}

// LoadEncryptionKey reads the encryption key in the file at path, written by
// [SaveEncryptionKey].
//
// It refuses, with [ErrInsecurePermissions], a file whose mode grants any
// access to group or others; the error names the file, its mode and the fix.
// Windows has no such mode bits and is not checked. Content that is not a
// key fails with [ErrInvalidEncryptionKey].
func LoadEncryptionKey(path string) (*EncryptionKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load encryption key: %w", err)
	}
	defer f.Close()

	// Check the mode of the file that was opened, not of whatever the path
	// names by now.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load encryption key: %w", err)
	}
	if perm := info.Mode().Perm(); runtime.GOOS != "windows" && perm&insecureBits != 0 {
		return nil, fmt.Errorf("load encryption key %s: mode %04o gives group or others access (fix: chmod 600 %s): %w",
			path, perm, path, ErrInsecurePermissions)
	}

	content, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	defer clear(content)
	if err != nil {
		return nil, fmt.Errorf("load encryption key: read %s: %w", path, err)
	}
	if len(content) > maxKeyFileSize {
		return nil, fmt.Errorf("load encryption key %s: larger than %d bytes: %w", path, maxKeyFileSize, ErrInvalidEncryptionKey)
	}
	k, err := ParseEncryptionKey(content)
	if err != nil {
		return nil, fmt.Errorf("load encryption key %s: %w", path, err)
	}
	return k, nil
}

// writeTemp writes content to a new mode 0600 file in dir, flushes it to
// disk and returns its path.
func writeTemp(dir, base string, content []byte) (name string, err error) {
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// CreateTemp already uses 0600 before the umask; make it exact.
	if err := f.Chmod(0o600); err != nil {
		return "", err
	}
	if _, err := f.Write(content); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// publish makes the complete file tmp appear at path, failing with an error
// that matches fs.ErrExist if path exists. A hard link does that atomically;
// where the file system has no hard links, publish falls back to a check
// followed by a rename, which can lose a race with another writer of path.
func publish(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, lerr := os.Lstat(path); lerr == nil {
		return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
	}
	return os.Rename(tmp, path)
}

// syncDir flushes the directory entry of a new file to disk. It is best
// effort: some systems (Windows) and file systems cannot sync a directory,
// and the file itself is already synced.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
