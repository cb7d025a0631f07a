package e2e

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/unibus/unibus/internal/secretfile"
)

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

	if err := secretfile.WriteNew(path, content); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("save encryption key %s: %w: %w", path, ErrExists, err)
		}
		return fmt.Errorf("save encryption key: %w", err)
	}
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
	content, err := secretfile.Read(path, maxKeyFileSize)
	defer clear(content)
	switch {
	case errors.Is(err, secretfile.ErrInsecurePermissions):
		return nil, fmt.Errorf("load encryption key %w: %w", err, ErrInsecurePermissions)
	case errors.Is(err, secretfile.ErrTooLarge):
		return nil, fmt.Errorf("load encryption key %w: %w", err, ErrInvalidEncryptionKey)
	case err != nil:
		return nil, fmt.Errorf("load encryption key: %w", err)
	}
	k, err := ParseEncryptionKey(content)
	if err != nil {
		return nil, fmt.Errorf("load encryption key %s: %w", path, err)
	}
	return k, nil
}
