package identity

import (
	"crypto/ed25519"
	"fmt"
)

// Bounds of a login nonce that [Identity.SignNonce] signs.
//
// nats-server (server/nkey.go) sends in its INFO a nonce of nonceLen = 15
// characters: 11 random bytes (nonceRawLen) in unpadded base64url
// (base64.RawURLEncoding), and uses the same for routes, leaf nodes and
// websocket clients. The range leaves room for other versions and
// implementations without letting a server choose a long or structured
// message.
const (
	// MinLoginNonceLen is the length, in bytes, of the shortest login nonce
	// SignNonce signs.
	MinLoginNonceLen = 8
	// MaxLoginNonceLen is the length, in bytes, of the longest login nonce
	// SignNonce signs.
	MaxLoginNonceLen = 64
)

// IsNonceForm reports whether b has the form of a NATS login nonce, the
// only messages [Identity.SignNonce] signs: MinLoginNonceLen to
// MaxLoginNonceLen bytes, each from the base64url alphabet [A-Za-z0-9_-].
func IsNonceForm(b []byte) bool {
	return len(b) >= MinLoginNonceLen && len(b) <= MaxLoginNonceLen && nonceAlphabetOnly(b)
}

// nonceAlphabetOnly reports whether every byte of b is in [A-Za-z0-9_-]
// (true for an empty b).
func nonceAlphabetOnly(b []byte) bool {
	for _, c := range b {
		if !isNonceByte(c) {
			return false
		}
	}
	return true
}

// isNonceByte reports whether c is in the base64url alphabet [A-Za-z0-9_-].
func isNonceByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// SignNonce answers a NATS server's login challenge: it returns the
// Ed25519 signature of nonce, the nonce from the server's INFO. Its
// signature matches nats.go's SignatureHandler; connect with
//
//	nats.Nkey(id.PublicKey(), id.SignNonce)
//
// SignNonce signs only nonces in the form nats-server issues (see
// [IsNonceForm]: 8 to 64 characters from [A-Za-z0-9_-]; nats-server sends
// 15). Anything else fails with [ErrBadNonce], whose message says the
// server is suspect: the nonce is the server's choice, and a server that
// could have any bytes signed here would hold an application signature
// (see [Identity.Sign]).
func (id *Identity) SignNonce(nonce []byte) ([]byte, error) {
	if !IsNonceForm(nonce) {
		return nil, fmt.Errorf("sign login nonce: %w", badNonce(nonce))
	}
	return id.sign("sign login nonce", nonce)
}

// badNonce explains why nonce is not in the nonce form. It never repeats
// the nonce, which the server chose and may be long or binary.
func badNonce(nonce []byte) error {
	const want = "a NATS server's nonce is %d to %d characters from [A-Za-z0-9_-]"
	if len(nonce) < MinLoginNonceLen || len(nonce) > MaxLoginNonceLen {
		return fmt.Errorf("%w: %d bytes, and "+want+"; the server may be hostile",
			ErrBadNonce, len(nonce), MinLoginNonceLen, MaxLoginNonceLen)
	}
	for i, c := range nonce {
		if !isNonceByte(c) {
			return fmt.Errorf("%w: byte 0x%02x at offset %d, and "+want+"; the server may be hostile",
				ErrBadNonce, c, i, MinLoginNonceLen, MaxLoginNonceLen)
		}
	}
	return ErrBadNonce // not reached
}

// Sign returns the Ed25519 signature of msg, an application message: a
// control-plane request (subjects.CanonicalRequest), an encryption-key
// binding (subjects.EncKeyBindingMessage), an owner signature
// (subjects.InviteRequest.SigningBytes and the like), an owner's key grant
// (e2e.SignGrant) or a frame.
//
// Sign refuses, with [ErrUntaggedMessage], a message made only of bytes
// from [A-Za-z0-9_-] (the empty message included). That makes the two
// message spaces of an identity disjoint, whatever a server sends:
//
//   - [Identity.SignNonce] signs only strings of [A-Za-z0-9_-] (and of
//     MinLoginNonceLen to MaxLoginNonceLen of them);
//   - Sign signs only strings with at least one byte outside that
//     alphabet.
//
// No byte string is in both, so a signature made to log in never verifies
// as an application signature, and the reverse, even if a future
// application message lacked a domain tag or the nonce bounds changed.
// Every unibus application message starts with a domain tag that ends in
// '\n' ("unibus-req-v1\n", "unibus-enckey-v1\n", "unibus-owner-v1\n",
// "unibus-key-grant-v1\n", "unibus-frame-sig-v1\n"), so Sign signs each
// of them.
//
// Do not pass Sign to nats.Nkey: it refuses every login nonce.
func (id *Identity) Sign(msg []byte) ([]byte, error) {
	if nonceAlphabetOnly(msg) {
		hint := ""
		if IsNonceForm(msg) {
			hint = " (a login nonce is signed with SignNonce)"
		}
		return nil, fmt.Errorf("sign: %w: a message of %d bytes, all from [A-Za-z0-9_-]%s", ErrUntaggedMessage, len(msg), hint)
	}
	return id.sign("sign", msg)
}

// sign signs msg with the identity's key; op prefixes errors.
func (id *Identity) sign(op string, msg []byte) ([]byte, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.wiped {
		return nil, fmt.Errorf("%s: %w", op, ErrWiped)
	}
	return ed25519.Sign(id.priv, msg), nil
}
