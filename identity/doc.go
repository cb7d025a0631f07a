// Package identity manages unibus identities: Ed25519 key pairs stored as
// nkey user seeds (SU…).
//
// The public key of an identity (U…) is its endpoint ID everywhere in
// unibus. A seed file written by [Save] holds the bare seed followed by a
// newline, with mode 0600, so the same file works with `nats --nkey` and
// with nats.go's NkeyOptionFromSeed. [Load] and
// [FromSeed] accept what nats.go accepts: a bare seed, an nkey seed file
// written by `nk -gen user` or nsc, or a decorated creds file.
//
// [Load] refuses seed files that group or others may read or write.
package identity
