package subjects

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// AddUserRequest is the body of UsersAdd: register a user (admins only).
// Reply: UserInfo.
type AddUserRequest struct {
	// Pub is the user's public key (U…).
	Pub string `json:"pub"`
	// Name is an optional display name.
	Name string `json:"name,omitempty"`
	// Admin makes the user an administrator.
	Admin bool `json:"admin,omitempty"`
}

// UserInfo describes a user: the reply of UsersAdd, UsersGet, UsersRevoke and
// UsersSetKey, and an element of ListUsersResponse.
type UserInfo struct {
	// Pub is the user's public key (U…), the identity.
	Pub string `json:"pub"`
	// Name is the display name, if any.
	Name string `json:"name,omitempty"`
	// Admin reports whether the user is an administrator.
	Admin bool `json:"admin,omitempty"`
	// EncKey is the user's public encryption key for receiving room keys,
	// empty until the user sets one (UsersSetKey).
	EncKey []byte `json:"enc_key,omitempty"`
	// EncKeySig is the identity's signature binding EncKey to Pub at
	// EncKeyVersion and EncKeyIssuedAt; check it with VerifyEncKeyBinding
	// before sealing a key to EncKey.
	EncKeySig []byte `json:"enc_key_sig,omitempty"`
	// EncKeyVersion numbers the user's encryption-key bindings: 1 for the
	// first, one more for each replacement (see SetKeyRequest).
	EncKeyVersion uint64 `json:"enc_key_version,omitempty"`
	// EncKeyIssuedAt is when the binding was signed (whole seconds).
	EncKeyIssuedAt time.Time `json:"enc_key_issued_at,omitzero"`
	// AddedAt is when the user was registered. Admin, AddedAt, Revoked and
	// RevokedAt are shown to the user itself and to administrators only.
	AddedAt time.Time `json:"added_at,omitzero"`
	// Revoked reports whether the user is revoked.
	Revoked bool `json:"revoked,omitempty"`
	// RevokedAt is when the user was revoked, if Revoked.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// GetUserRequest is the body of UsersGet. Reply: UserInfo.
type GetUserRequest struct {
	// Pub is the public key of the user to read.
	Pub string `json:"pub"`
}

// Paging of UsersList.
const (
	// DefaultListUsersLimit is the most users one UsersList reply holds
	// when the request does not set Limit.
	DefaultListUsersLimit = 200
	// MaxListUsersLimit is the largest Limit a UsersList request may ask
	// for.
	MaxListUsersLimit = 1000
)

// ListUsersRequest is the body of UsersList (admins only); an empty body
// asks for the first page. Reply: ListUsersResponse.
//
// Users come in order of their public keys. To read them all, send After =
// the reply's Next until Next is empty. Each page reads the users afresh:
// a user registered during a listing shows up if its key sorts after the
// page being read.
type ListUsersRequest struct {
	// After, when set, is a user public key: the page starts with the first
	// user whose key sorts after it. It need not be a registered user.
	After string `json:"after,omitempty"`
	// Limit is the most users the reply holds: 1 to MaxListUsersLimit, 0
	// for DefaultListUsersLimit. A reply may hold fewer, to stay within the
	// server's max_payload, and still have a Next.
	Limit int `json:"limit,omitempty"`
}

// ListUsersResponse is the reply of UsersList.
type ListUsersResponse struct {
	// Users is one page of users, revoked ones included, in order of
	// their public keys.
	Users []UserInfo `json:"users"`
	// Next, when set, is the After of the next page: more users follow.
	Next string `json:"next,omitempty"`
}

// MarshalJSON encodes an empty list as [] rather than null.
func (r ListUsersResponse) MarshalJSON() ([]byte, error) {
	type plain ListUsersResponse
	if r.Users == nil {
		r.Users = []UserInfo{}
	}
	return json.Marshal(plain(r))
}

// RevokeUserRequest is the body of UsersRevoke (admins only). Reply: UserInfo.
type RevokeUserRequest struct {
	// Pub is the public key of the user to revoke.
	Pub string `json:"pub"`
}

// SetKeyRequest is the body of UsersSetKey: publish the caller's encryption
// key, bound to the caller's identity by EncKeySig (see SignEncKeyBinding).
// The caller is the request's signer. Reply: UserInfo.
//
// Bindings are numbered so that an old one cannot pass for the current
// one: the service takes a binding only if EncKeyVersion is above the
// registered one (409 otherwise; sending the registered binding again is
// a no-op), and a client remembers the highest version it has seen of each
// user and refuses to seal to an older one (a server replaying a replaced,
// perhaps stolen, key).
type SetKeyRequest struct {
	// EncKey is the public encryption key (HPKE).
	EncKey []byte `json:"enc_key"`
	// EncKeySig is the identity's Ed25519 signature over
	// EncKeyBindingMessage(pub, EncKey, EncKeyVersion, EncKeyIssuedAt).
	EncKeySig []byte `json:"enc_key_sig"`
	// EncKeyVersion is the binding's number: 1 for a user's first key,
	// then one more than the registered UserInfo.EncKeyVersion.
	EncKeyVersion uint64 `json:"enc_key_version"`
	// EncKeyIssuedAt is when the binding was signed, in whole seconds;
	// the service refuses a time beyond its clock-skew allowance.
	EncKeyIssuedAt time.Time `json:"enc_key_issued_at"`
}

const encKeyDomain = "unibus-enckey-v2\n"

// EncKeyBindingMessage returns the bytes a user's identity key signs to bind
// an encryption key to it:
//
//	"unibus-enckey-v2\n" + pub + "\n" + decimal(version) + "\n" +
//	decimal(issuedAt in Unix seconds) + "\n" + hex(sha256(encKey))
func EncKeyBindingMessage(pub string, encKey []byte, version uint64, issuedAt time.Time) []byte {
	sum := sha256.Sum256(encKey)
	b := make([]byte, 0, len(encKeyDomain)+len(pub)+44+hex.EncodedLen(len(sum)))
	b = append(b, encKeyDomain...)
	b = append(b, pub...)
	b = append(b, '\n')
	b = strconv.AppendUint(b, version, 10)
	b = append(b, '\n')
	b = strconv.AppendInt(b, issuedAt.Unix(), 10)
	b = append(b, '\n')
	return hex.AppendEncode(b, sum[:])
}

// SignEncKeyBinding signs EncKeyBindingMessage for the user key pair kp,
// encKey, version and issuedAt, for SetKeyRequest.EncKeySig. Version must
// be at least 1.
func SignEncKeyBinding(kp Signer, encKey []byte, version uint64, issuedAt time.Time) ([]byte, error) {
	if version == 0 {
		return nil, fmt.Errorf("sign encryption key: %w: version 0 (bindings count from 1)", ErrBadSignature)
	}
	pub, err := userPublicKey(kp)
	if err != nil {
		return nil, fmt.Errorf("sign encryption key: %w", err)
	}
	sig, err := kp.Sign(EncKeyBindingMessage(pub, encKey, version, issuedAt))
	if err != nil {
		return nil, fmt.Errorf("sign encryption key: %w", err)
	}
	return sig, nil
}

// VerifyEncKeyBinding checks that sig is pub's signature binding encKey at
// version and issuedAt. A binding of version 0 (one made before bindings
// were numbered) does not verify. The error matches ErrMissingSignature
// (empty sig), ErrInvalidUserKey or ErrBadSignature.
func VerifyEncKeyBinding(pub string, encKey []byte, version uint64, issuedAt time.Time, sig []byte) error {
	key, err := NormalizeUserKey(pub)
	if err != nil {
		return fmt.Errorf("verify encryption key: %w", err)
	}
	switch {
	case len(sig) == 0:
		return fmt.Errorf("verify encryption key: %w", ErrMissingSignature)
	case version == 0:
		return fmt.Errorf("verify encryption key: %w: unnumbered binding (version 0): the user must register its key again", ErrBadSignature)
	}
	if err := verifySig(key, EncKeyBindingMessage(key, encKey, version, issuedAt), sig); err != nil {
		return fmt.Errorf("verify encryption key: %w", err)
	}
	return nil
}
