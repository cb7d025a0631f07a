package secretfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

var (
	// ErrInsecurePermissions means the file grants group or others access.
	ErrInsecurePermissions = errors.New("insecure file permissions")
	// ErrTooLarge means the file is larger than the reader's bound.
	ErrTooLarge = errors.New("file too large")
)

// insecureBits are the permission bits a secret file must not have.
const insecureBits = 0o077

// Read returns the content of the secret file at path, at most max bytes.
// A file whose mode grants group or others any access is refused with
// ErrInsecurePermissions, with the fix in the message (Windows has no such
// bits and is not checked); a larger file is ErrTooLarge. The caller should
// clear the content when done.
func Read(path string, max int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Check the mode of the file that was opened, not of whatever the path
	// names by now.
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := info.Mode().Perm(); runtime.GOOS != "windows" && perm&insecureBits != 0 {
		return nil, fmt.Errorf("%s: mode %04o gives group or others access (fix: chmod 600 %s): %w", path, perm, path, ErrInsecurePermissions)
	}
	content, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		clear(content)
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(content) > max {
		clear(content)
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", path, max, ErrTooLarge)
	}
	return content, nil
}

// WriteNew writes content to a new file at path with mode 0600, creating
// missing parent directories with mode 0700. It never overwrites: an
// existing path fails with an error matching fs.ErrExist and is left
// untouched. The write is atomic: content goes to a synced temporary file
// in the same directory, which is then hard-linked to path, so a crash never
// leaves a partial file at path.
func WriteNew(path string, content []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return &fs.PathError{Op: "create", Path: path, Err: fs.ErrExist}
	}
	tmp, err := writeTemp(dir, filepath.Base(path), content)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := publish(tmp, path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
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

// publish makes the complete file tmp appear at path, failing with an
// error that matches fs.ErrExist if path exists. A hard link does that
// atomically; where the file system has no hard links, publish falls back
// to a check followed by a rename, which can lose a race with another
// writer of path.
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
// effort: some systems and file systems cannot sync a directory, and the
// file itself is already synced.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
