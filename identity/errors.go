package identity

import "errors"

var (
	// ErrInsecurePermissions reports a seed file whose mode grants any access
	// to group or others. Fix it with `chmod 600 FILE`.
	ErrInsecurePermissions = errors.New("insecure seed file permissions")

	// ErrMalformedSeed reports content that holds no valid nkey seed.
	ErrMalformedSeed = errors.New("malformed nkey seed")

	// ErrNotUserSeed reports a valid nkey seed of another kind (an account
	// seed SA…, an operator seed SO…, a curve seed SX…, …) where a user
	// seed SU… belongs.
	ErrNotUserSeed = errors.New("not an nkey user seed")

	// ErrExists reports that Save refused to overwrite an existing file.
	// Errors that match it also match [io/fs.ErrExist].
	ErrExists = errors.New("identity file already exists")

	// ErrWiped reports use of an identity after [Identity.Wipe].
	ErrWiped = errors.New("identity wiped")
)
