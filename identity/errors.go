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

	// ErrBadNonce reports a login nonce that [Identity.SignNonce] refused
	// to sign: it is not in the form nats-server issues (see
	// [IsNonceForm]). The server that sent it is suspect: it may be trying
	// to have an application message signed.
	ErrBadNonce = errors.New("refusing to sign a login nonce that is not a NATS server nonce")

	// ErrUntaggedMessage reports an application message that
	// [Identity.Sign] refused to sign because it is made only of
	// characters of login nonces, [A-Za-z0-9_-]: such a message could be
	// a login signature's, and every application message starts with a
	// domain tag that ends in '\n'.
	ErrUntaggedMessage = errors.New("refusing to sign an application message without a domain tag")
)
