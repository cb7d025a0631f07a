package identity

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/unibus/unibus/internal/secretfile"
)

// maxFileSize bounds what Load reads: a seed is 58 bytes and a creds file
// a few KiB.
const maxFileSize = 64 << 10

// Load reads the identity in the seed file at path (see [FromSeed] for the
// accepted formats).
//
// Load refuses, with [ErrInsecurePermissions], a file whose mode grants any
// access to group or others; the error names the file, its mode and the
// fix. Windows has no such mode bits and is not checked.
func Load(path string) (*Identity, error) {
	content, err := secretfile.Read(path, maxFileSize)
	defer clear(content)
	switch {
	case errors.Is(err, secretfile.ErrInsecurePermissions):
		return nil, fmt.Errorf("load identity %w: %w", err, ErrInsecurePermissions)
	case errors.Is(err, secretfile.ErrTooLarge):
		return nil, fmt.Errorf("load identity %w: %w", err, ErrMalformedSeed)
	case err != nil:
		return nil, fmt.Errorf("load identity: %w", err)
	}
	id, err := FromSeed(content)
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", path, err)
	}
	return id, nil
}

// Save writes the seed of id to a new file at path: the bare seed and a
// newline, mode 0600, the format of `nk -gen user` that `nats --nkey`
// reads. It creates missing parent directories with mode 0700.
//
// Save never overwrites: if path exists it fails with [ErrExists] (which
// also matches [fs.ErrExist]) and leaves the file untouched. The write is
// atomic: the seed goes to a temporary file in the same directory, which
// is then hard-linked to path, so a crash never leaves a partial seed file
// at path.
func Save(path string, id *Identity) error {
	if id == nil {
		return errors.New("save identity: nil identity")
	}
	seed, err := id.Seed()
	if err != nil {
		return fmt.Errorf("save identity: %w", err)
	}
	content := append(seed, '\n')
	defer clear(content)

	if err := secretfile.WriteNew(path, content); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("save identity %s: %w: %w", path, ErrExists, err)
		}
		return fmt.Errorf("save identity: %w", err)
	}
	return nil
}
