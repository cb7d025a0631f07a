package subjects

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// OwnerSigned is a request that only a room's owner may make and that
// carries the owner's signature in its OwnerSig field: InviteRequest,
// RemoveRequest and RekeyRequest. Sign one with SignOwner, check one with
// VerifyOwner.
type OwnerSigned interface {
	// SigningBytes returns the bytes the owner signs (see "Owner
	// signatures" in the package documentation); OwnerSig does not affect
	// them.
	SigningBytes() ([]byte, error)
	// ownerSig is the request's OwnerSig field.
	ownerSig() *[]byte
}

var (
	_ OwnerSigned = (*InviteRequest)(nil)
	_ OwnerSigned = (*RemoveRequest)(nil)
	_ OwnerSigned = (*RekeyRequest)(nil)
)

// SigningBytes returns the bytes the owner signs for r.
func (r *InviteRequest) SigningBytes() ([]byte, error) { return ownerSigningBytes(RoomsInvite, *r) }

// SigningBytes returns the bytes the owner signs for r.
func (r *RemoveRequest) SigningBytes() ([]byte, error) { return ownerSigningBytes(RoomsRemove, *r) }

// SigningBytes returns the bytes the owner signs for r.
func (r *RekeyRequest) SigningBytes() ([]byte, error) { return ownerSigningBytes(RoomsRekey, *r) }

func (r *InviteRequest) ownerSig() *[]byte { return &r.OwnerSig }
func (r *RemoveRequest) ownerSig() *[]byte { return &r.OwnerSig }
func (r *RekeyRequest) ownerSig() *[]byte  { return &r.OwnerSig }

// ownerDomain starts the bytes an owner signs; see "Owner signatures" in
// the package documentation.
const ownerDomain = "unibus-owner-v1\n"

// ownerSigningBytes returns the bytes the owner signs for the request r
// to op: r is a copy, whose OwnerSig it clears.
func ownerSigningBytes[R any, P interface {
	*R
	ownerSig() *[]byte
}](op string, r R) ([]byte, error) {
	*P(&r).ownerSig() = nil
	j, err := json.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("encode %s request: %w", op, err)
	}
	sum := sha256.Sum256(j)
	b := make([]byte, 0, len(ownerDomain)+len(op)+1+hex.EncodedLen(len(sum)))
	b = append(b, ownerDomain...)
	b = append(b, op...)
	b = append(b, '\n')
	return hex.AppendEncode(b, sum[:]), nil
}

// SignOwner sets req's OwnerSig to the signature of the owner's user key
// pair kp over req.SigningBytes. Set every other field first.
func SignOwner(kp Signer, req OwnerSigned) error {
	msg, err := req.SigningBytes()
	if err != nil {
		return err
	}
	if _, err := userPublicKey(kp); err != nil {
		return fmt.Errorf("sign as owner: %w", err)
	}
	sig, err := kp.Sign(msg)
	if err != nil {
		return fmt.Errorf("sign as owner: %w", err)
	}
	*req.ownerSig() = sig
	return nil
}

// VerifyOwner checks that req's OwnerSig is the signature of owner, the
// room owner's public key, over req.SigningBytes. The error matches
// ErrMissingSignature, ErrBadSignature or ErrInvalidUserKey.
func VerifyOwner(owner string, req OwnerSigned) error {
	msg, err := req.SigningBytes()
	if err != nil {
		return err
	}
	key, err := NormalizeUserKey(owner)
	if err != nil {
		return fmt.Errorf("verify owner signature: %w", err)
	}
	sig := *req.ownerSig()
	if len(sig) == 0 {
		return fmt.Errorf("verify owner signature: %w", ErrMissingSignature)
	}
	if err := verifySig(key, msg, sig); err != nil {
		return fmt.Errorf("verify owner signature: %w", err)
	}
	return nil
}
