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
//
// An identity's key signs two kinds of message that must never be
// confused: the nonce a NATS server sends to log in, and application
// messages (control-plane requests, encryption-key bindings, owner
// signatures, frames). [Identity.SignNonce] signs only nonces in the form
// nats-server issues and [Identity.Sign] never signs a message in that
// form, so a server that chooses its nonce cannot have an application
// message signed: connect with nats.Nkey(id.PublicKey(), id.SignNonce).
package identity
