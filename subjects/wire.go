package subjects

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Error codes of ErrorBody.Code and of the Nats-Service-Error-Code header.
const (
	// CodeBadRequest (400): malformed request or invalid value.
	CodeBadRequest = 400
	// CodeUnauthenticated (401): missing or invalid signature, unregistered
	// or revoked signer, replayed nonce, clock skew.
	CodeUnauthenticated = 401
	// CodeForbidden (403): not owner or admin, refused by policy, or no
	// sealed key for the caller.
	CodeForbidden = 403
	// CodeNotFound (404): no such user, room, member or key.
	CodeNotFound = 404
	// CodeConflict (409): duplicate, or stale epoch.
	CodeConflict = 409
	// CodeTooLarge (413): request or blob too large.
	CodeTooLarge = 413
	// CodeTooManyRequests (429): rate limited; retry after the delay that
	// HeaderRetryAfter and ErrorBody.RetryAfterMs give. The request was not
	// processed.
	CodeTooManyRequests = 429
	// CodeUnavailable (503): backend unavailable; the service failed closed.
	CodeUnavailable = 503
)

// HeaderRetryAfter is set on a CodeTooManyRequests reply: how long to wait
// before the request can succeed, in whole milliseconds (decimal, at least
// 1), like HTTP's Retry-After. ErrorBody.RetryAfterMs carries the same
// value.
const HeaderRetryAfter = "Unibus-Retry-After-Ms"

// ErrorBody is the JSON body of every control-plane error reply, sent along
// with micro's Nats-Service-Error and Nats-Service-Error-Code headers. Error
// is for humans and never carries internal details.
type ErrorBody struct {
	// Error is a human-readable message.
	Error string `json:"error"`
	// Code is one of the Code… constants.
	Code int `json:"code"`
	// RetryAfterMs, on a CodeTooManyRequests reply, is how long to wait
	// before retrying, in milliseconds (the HeaderRetryAfter header).
	RetryAfterMs int64 `json:"retry_after_ms,omitempty"`
}

// Room modes (CreateRoomRequest.Mode, RoomInfo.Mode, RoomRef.Mode).
const (
	// ModeE2E is an end-to-end encrypted room: frames are sealed with a
	// per-epoch room key that the services never see. It is the default.
	ModeE2E = "e2e"
	// ModeCleartext is a room whose frames are signed but not sealed; a
	// deployment may refuse such rooms by policy.
	ModeCleartext = "cleartext"
)

// HistoryNone is the history policy of every room (CreateRoomRequest.History,
// RoomInfo.History, RoomRef.Policy): the bus keeps no frames, so members see
// what is published while they are subscribed. The field exists so that a
// policy that keeps frames can come without a change of wire format; until
// then the service refuses any other value (400).
const HistoryNone = "none"

// Member roles (MemberInfo.Role, RoomRef.Role).
const (
	// RoleOwner is the room's creator, who alone may invite, remove and
	// rekey.
	RoleOwner = "owner"
	// RoleMember is any other member.
	RoleMember = "member"
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
	// EncKeySig is the identity's signature binding EncKey to Pub; check it
	// with VerifyEncKeyBinding before sealing a key to EncKey.
	EncKeySig []byte `json:"enc_key_sig,omitempty"`
	// AddedAt is when the user was registered.
	AddedAt time.Time `json:"added_at"`
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
type SetKeyRequest struct {
	// EncKey is the public encryption key (HPKE).
	EncKey []byte `json:"enc_key"`
	// EncKeySig is the identity's Ed25519 signature over
	// EncKeyBindingMessage(pub, EncKey).
	EncKeySig []byte `json:"enc_key_sig"`
}

const encKeyDomain = "unibus-enckey-v1\n"

// EncKeyBindingMessage returns the bytes a user's identity key signs to bind
// an encryption key to it:
//
//	"unibus-enckey-v1\n" + pub + "\n" + hex(sha256(encKey))
func EncKeyBindingMessage(pub string, encKey []byte) []byte {
	sum := sha256.Sum256(encKey)
	b := make([]byte, 0, len(encKeyDomain)+len(pub)+1+hex.EncodedLen(len(sum)))
	b = append(b, encKeyDomain...)
	b = append(b, pub...)
	b = append(b, '\n')
	return hex.AppendEncode(b, sum[:])
}

// SignEncKeyBinding signs EncKeyBindingMessage for the user key pair kp and
// encKey, for SetKeyRequest.EncKeySig.
func SignEncKeyBinding(kp Signer, encKey []byte) ([]byte, error) {
	pub, err := userPublicKey(kp)
	if err != nil {
		return nil, fmt.Errorf("sign encryption key: %w", err)
	}
	sig, err := kp.Sign(EncKeyBindingMessage(pub, encKey))
	if err != nil {
		return nil, fmt.Errorf("sign encryption key: %w", err)
	}
	return sig, nil
}

// VerifyEncKeyBinding checks that sig is pub's signature binding encKey. The
// error matches ErrMissingSignature (empty sig), ErrInvalidUserKey or
// ErrBadSignature.
func VerifyEncKeyBinding(pub string, encKey, sig []byte) error {
	key, err := NormalizeUserKey(pub)
	if err != nil {
		return fmt.Errorf("verify encryption key: %w", err)
	}
	if len(sig) == 0 {
		return fmt.Errorf("verify encryption key: %w", ErrMissingSignature)
	}
	if err := verifySig(key, EncKeyBindingMessage(key, encKey), sig); err != nil {
		return fmt.Errorf("verify encryption key: %w", err)
	}
	return nil
}

// CreateRoomRequest is the body of RoomsCreate; the caller becomes the owner.
// Reply: RoomInfo.
type CreateRoomRequest struct {
	// RoomID is the new room's ID, chosen by the client with NewRoomID:
	// required in an encrypted room, because SealedKey binds it; optional
	// in a cleartext room (the service picks one). An ID in use is 409.
	RoomID string `json:"room_id,omitempty"`
	// Name is an optional display name.
	Name string `json:"name,omitempty"`
	// Mode is ModeE2E (the default when empty) or ModeCleartext.
	Mode string `json:"mode,omitempty"`
	// History is HistoryNone, also when empty.
	History string `json:"history,omitempty"`
	// SealedKey is, in an encrypted room, the room key of epoch 1 sealed to
	// the owner's own encryption key. Empty in cleartext rooms.
	SealedKey []byte `json:"sealed_key,omitempty"`
}

// RoomInfo describes a room: the reply of RoomsCreate, RoomsGet, RoomsRemove,
// RoomsLeave and RoomsRekey (the latter three after the change).
type RoomInfo struct {
	// RoomID is the room's ID (see NewRoomID).
	RoomID string `json:"room_id"`
	// Subject is the subject of the room's frames, Room(RoomID).
	Subject string `json:"subject"`
	// Name is the display name, if any.
	Name string `json:"name,omitempty"`
	// Mode is ModeE2E or ModeCleartext.
	Mode string `json:"mode"`
	// History is HistoryNone.
	History string `json:"history"`
	// Owner is the owner's public key.
	Owner string `json:"owner"`
	// Epoch is the current key epoch: 1 when an encrypted room is created,
	// raised by every rekey. Cleartext rooms have no keys and epoch 0.
	Epoch uint64 `json:"epoch"`
	// NextEpoch is the epoch the next rekey must seal its keys for (the
	// sealed keys bind it). It is usually Epoch+1; a rekey that lost a race
	// or crashed leaves its number unused, so it can be more. Zero in
	// cleartext rooms.
	NextEpoch uint64 `json:"next_epoch,omitempty"`
	// CreatedAt is when the room was created.
	CreatedAt time.Time `json:"created_at"`
}

// RoomRequest is the body of RoomsGet, RoomsLeave and RoomsMembers: a request
// about one room.
type RoomRequest struct {
	// RoomID is the room's ID.
	RoomID string `json:"room_id"`
}

// InviteRequest is the body of RoomsInvite: the owner adds Pub to the room.
// In an encrypted room it carries the current epoch's room key sealed to the
// invitee. OwnerSig is the owner's signature (see SignOwner). Reply:
// MemberInfo.
type InviteRequest struct {
	// RoomID is the room's ID.
	RoomID string `json:"room_id"`
	// Pub is the invitee's public key.
	Pub string `json:"pub"`
	// Epoch is the epoch of SealedKey, the room's current epoch.
	Epoch uint64 `json:"epoch,omitempty"`
	// SealedKey is the room key of Epoch sealed to the invitee's
	// encryption key. Empty in cleartext rooms.
	SealedKey []byte `json:"sealed_key,omitempty"`
	// OwnerSig is the owner's Ed25519 signature over SigningBytes.
	OwnerSig []byte `json:"owner_sig,omitempty"`
}

// RekeyBundle is a new epoch's room key, sealed to every member who keeps
// access.
type RekeyBundle struct {
	// FromEpoch is the room's current epoch. A stale FromEpoch is refused
	// (409).
	FromEpoch uint64 `json:"from_epoch"`
	// ToEpoch is the epoch the keys are sealed for: RoomInfo.NextEpoch.
	// Any other value is refused (409); re-read the room and retry.
	ToEpoch uint64 `json:"to_epoch"`
	// Keys maps each remaining member's public key, the owner's included,
	// to the new room key sealed to that member.
	Keys map[string][]byte `json:"keys"`
}

// RemoveRequest is the body of RoomsRemove: the owner removes Pub. In an
// encrypted room Rekey is required, so that the removed member cannot read
// the next epoch. OwnerSig is the owner's signature (see SignOwner). Reply:
// RoomInfo.
type RemoveRequest struct {
	// RoomID is the room's ID.
	RoomID string `json:"room_id"`
	// Pub is the public key of the member to remove.
	Pub string `json:"pub"`
	// Rekey is the next epoch's key for the remaining members; nil in
	// cleartext rooms.
	Rekey *RekeyBundle `json:"rekey,omitempty"`
	// OwnerSig is the owner's Ed25519 signature over SigningBytes.
	OwnerSig []byte `json:"owner_sig,omitempty"`
}

// RekeyRequest is the body of RoomsRekey: the owner starts epoch ToEpoch. OwnerSig is the owner's signature (see SignOwner). Reply:
// RoomInfo.
type RekeyRequest struct {
	// RoomID is the room's ID.
	RoomID string `json:"room_id"`
	// FromEpoch is the room's current epoch. A stale one is refused (409).
	FromEpoch uint64 `json:"from_epoch"`
	// ToEpoch is the epoch the keys are sealed for: RoomInfo.NextEpoch.
	// Any other value is refused (409); re-read the room and retry.
	ToEpoch uint64 `json:"to_epoch"`
	// Keys maps each member's public key, the owner's included, to the new
	// room key sealed to that member.
	Keys map[string][]byte `json:"keys"`
	// OwnerSig is the owner's Ed25519 signature over SigningBytes.
	OwnerSig []byte `json:"owner_sig,omitempty"`
}

// MemberInfo describes a room member: the reply of RoomsInvite and an element
// of MembersResponse.
type MemberInfo struct {
	// Pub is the member's public key.
	Pub string `json:"pub"`
	// Role is RoleOwner or RoleMember.
	Role string `json:"role"`
	// JoinedEpoch is the room's epoch when the member joined; the member
	// holds keys from this epoch on.
	JoinedEpoch uint64 `json:"joined_epoch"`
	// EncKey and EncKeySig are the member's encryption key and the
	// identity's binding signature over it (see VerifyEncKeyBinding), in
	// the RoomsMembers reply, so that an owner seals a rekey from one
	// request. Empty when the member has not set a key.
	EncKey    []byte `json:"enc_key,omitempty"`
	EncKeySig []byte `json:"enc_key_sig,omitempty"`
}

// MembersResponse is the reply of RoomsMembers.
type MembersResponse struct {
	// Members lists the room's members.
	Members []MemberInfo `json:"members"`
}

// MarshalJSON encodes an empty list as [] rather than null.
func (r MembersResponse) MarshalJSON() ([]byte, error) {
	type plain MembersResponse
	if r.Members == nil {
		r.Members = []MemberInfo{}
	}
	return json.Marshal(plain(r))
}

// RoomRef is one of the caller's rooms in MineResponse: what a peer needs to
// subscribe and fetch keys.
type RoomRef struct {
	// RoomID is the room's ID.
	RoomID string `json:"room_id"`
	// Subject is the subject of the room's frames.
	Subject string `json:"subject"`
	// Epoch is the room's current key epoch.
	Epoch uint64 `json:"epoch"`
	// Policy is the room's history policy, the same value as
	// RoomInfo.History: HistoryNone.
	Policy string `json:"policy"`
	// Role is the caller's role, RoleOwner or RoleMember.
	Role string `json:"role"`
	// Mode is ModeE2E or ModeCleartext. A peer must refuse cleartext
	// frames in a ModeE2E room.
	Mode string `json:"mode"`
	// Name is the room's display name, if any, and Owner its owner's key,
	// so that a list of rooms needs no request per room.
	Name  string `json:"name,omitempty"`
	Owner string `json:"owner,omitempty"`
}

// MineResponse is the reply of RoomsMine (the request body is empty).
type MineResponse struct {
	// Rooms lists the rooms the caller is a member of.
	Rooms []RoomRef `json:"rooms"`
}

// MarshalJSON encodes an empty list as [] rather than null.
func (r MineResponse) MarshalJSON() ([]byte, error) {
	type plain MineResponse
	if r.Rooms == nil {
		r.Rooms = []RoomRef{}
	}
	return json.Marshal(plain(r))
}

// KeyRequest is the body of RoomsKey: the caller's sealed room key for an
// epoch. Reply: KeyResponse.
type KeyRequest struct {
	// RoomID is the room's ID.
	RoomID string `json:"room_id"`
	// Epoch is the epoch wanted; 0 means the current one.
	Epoch uint64 `json:"epoch,omitempty"`
}

// KeyResponse is the reply of RoomsKey.
type KeyResponse struct {
	// RoomID is the room's ID.
	RoomID string `json:"room_id"`
	// Epoch is the epoch of SealedKey (the current one if 0 was asked).
	Epoch uint64 `json:"epoch"`
	// SealedKey is the room key of Epoch sealed to the caller.
	SealedKey []byte `json:"sealed_key"`
}

// Blobs. A blob is content stored in a room through the blobs service and
// named by the SHA-256 of what is stored (BlobID). It travels in chunks of
// BlobChunkSize bytes, so that every request and reply stays well below the
// server's max_payload whatever the blob's size. In an encrypted room the
// client seals the content before it is stored: the blob ID is then the
// hash of the ciphertext, and the services never see the content.
const (
	// BlobChunkSize is the size of every chunk of a blob but the last,
	// which holds the remaining 1..BlobChunkSize bytes (the empty blob is
	// one empty chunk). In JSON a full chunk is about 700 KB of base64,
	// below NATS's default max_payload of 1 MiB.
	BlobChunkSize = 512 << 10
	// MaxBlobChunks bounds the number of chunks of a blob.
	MaxBlobChunks = 2048
	// MaxBlobSize is the largest blob the protocol allows, 1 GiB; a
	// deployment sets its own limit below it (64 MiB by default).
	MaxBlobSize = BlobChunkSize * MaxBlobChunks
	// BlobIDLen is the length of a blob ID: 64 lowercase hex digits.
	BlobIDLen = 2 * sha256.Size
)

// ErrInvalidBlobID reports a value that is not a blob ID (see
// ValidateBlobID). On the control plane it means 400 (CodeBadRequest).
var ErrInvalidBlobID = errors.New("invalid blob id")

// BlobID returns the ID of a blob whose stored content is data: its SHA-256
// in lowercase hex, as sha256sum prints it.
func BlobID(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// ValidateBlobID returns an error matching ErrInvalidBlobID unless id is a
// blob ID: exactly BlobIDLen lowercase hex digits. A blob ID is then also a
// safe subject token and object name.
func ValidateBlobID(id string) error {
	if len(id) != BlobIDLen {
		return &invalidError{kind: ErrInvalidBlobID, value: id, reason: fmt.Sprintf("%d characters, want %d lowercase hex digits (SHA-256)", len(id), BlobIDLen)}
	}
	for _, r := range id {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return &invalidError{kind: ErrInvalidBlobID, value: id, reason: fmt.Sprintf("contains %q, want lowercase hex digits", r)}
		}
	}
	return nil
}

// BlobChunks returns the number of chunks of a blob of size bytes: size
// divided by BlobChunkSize, rounded up, and at least one (the empty blob is
// one empty chunk).
func BlobChunks(size int64) int {
	if size <= 0 {
		return 1
	}
	return int((size + BlobChunkSize - 1) / BlobChunkSize)
}

// BlobChunkLen returns the length of chunk index of a blob of size bytes,
// or -1 when the blob has no such chunk.
func BlobChunkLen(size int64, index int) int {
	n := BlobChunks(size)
	switch {
	case size < 0 || index < 0 || index >= n:
		return -1
	case index < n-1:
		return BlobChunkSize
	}
	return int(size - int64(n-1)*BlobChunkSize)
}

// BlobPutRequest is the body of BlobsPut: one chunk of a blob, from a member
// of the room. Reply: BlobInfo.
//
// Chunks may come in any order and more than once (a chunk already stored
// is kept). The put of the last chunk (Index BlobChunks(Size)-1) completes
// the blob: the service checks that every chunk is there and that their
// content, in order, hashes to Blob, and only then makes the blob readable;
// on a mismatch it deletes the chunks and answers 400. So send the last
// chunk last, and send it again to retry a completion. A put to a blob that
// is already complete stores nothing and answers Complete at once: an
// uploader can stop there.
type BlobPutRequest struct {
	// RoomID is the room the blob belongs to.
	RoomID string `json:"room_id"`
	// Blob is the blob's ID: BlobID of its complete content.
	Blob string `json:"blob"`
	// Size is the size of the complete content in bytes. It fixes the
	// number of chunks (BlobChunks) and the length of each (BlobChunkLen),
	// and is checked against the service's limit (413) before anything is
	// stored.
	Size int64 `json:"size"`
	// Index is the chunk's position, from 0.
	Index int `json:"index"`
	// Data is the chunk: BlobChunkLen(Size, Index) bytes.
	Data []byte `json:"data,omitempty"`
}

// BlobInfo is the reply of BlobsPut.
type BlobInfo struct {
	// RoomID is the blob's room.
	RoomID string `json:"room_id"`
	// Blob is the blob's ID.
	Blob string `json:"blob"`
	// Size is the blob's size in bytes.
	Size int64 `json:"size"`
	// Chunks is the blob's number of chunks.
	Chunks int `json:"chunks"`
	// Complete reports that the blob is stored, verified against its ID,
	// and readable with BlobsGet.
	Complete bool `json:"complete"`
}

// BlobGetRequest is the body of BlobsGet: one chunk of a complete blob, for
// a member of the room. Reply: BlobChunk.
type BlobGetRequest struct {
	// RoomID is the blob's room.
	RoomID string `json:"room_id"`
	// Blob is the blob's ID.
	Blob string `json:"blob"`
	// Index is the chunk wanted, from 0; the reply says how many there are.
	Index int `json:"index"`
}

// BlobChunk is the reply of BlobsGet. A reader checks the SHA-256 of the
// chunks, in order, against Blob: the ID, not the service, vouches for the
// content.
type BlobChunk struct {
	// RoomID is the blob's room.
	RoomID string `json:"room_id"`
	// Blob is the blob's ID.
	Blob string `json:"blob"`
	// Index is the chunk's position.
	Index int `json:"index"`
	// Chunks is the blob's number of chunks, BlobChunks(Size).
	Chunks int `json:"chunks"`
	// Size is the blob's size in bytes.
	Size int64 `json:"size"`
	// Data is the chunk: BlobChunkLen(Size, Index) bytes.
	Data []byte `json:"data,omitempty"`
}

// BlobRef names a blob for the members of its room: what a receiver needs
// to fetch and open it. Peers send it as JSON inside a message (which is
// itself sealed in an encrypted room).
type BlobRef struct {
	// RoomID is the blob's room.
	RoomID string `json:"room_id"`
	// Blob is the blob's ID.
	Blob string `json:"blob"`
	// Epoch is the epoch of the room key that sealed the blob; 0 in
	// cleartext rooms. A sealed blob also names its epoch itself.
	Epoch uint64 `json:"epoch,omitempty"`
	// Size is the size of the content in bytes, before sealing.
	Size int64 `json:"size"`
}

// ownerDomain starts the bytes an owner signs; see "Owner signatures" in
// the package documentation.
const ownerDomain = "unibus-owner-v1\n"

// ownerSigningBytes returns the owner-signed bytes for op and the request
// zeroed, which must have OwnerSig cleared.
func ownerSigningBytes(op string, zeroed any) ([]byte, error) {
	j, err := json.Marshal(zeroed)
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

// signOwner signs msg with the user key pair kp.
func signOwner(kp Signer, signingBytes func() ([]byte, error)) ([]byte, error) {
	msg, err := signingBytes()
	if err != nil {
		return nil, err
	}
	if _, err := userPublicKey(kp); err != nil {
		return nil, fmt.Errorf("sign as owner: %w", err)
	}
	sig, err := kp.Sign(msg)
	if err != nil {
		return nil, fmt.Errorf("sign as owner: %w", err)
	}
	return sig, nil
}

// verifyOwner checks that sig is owner's signature over the request's
// signing bytes.
func verifyOwner(owner string, signingBytes func() ([]byte, error), sig []byte) error {
	msg, err := signingBytes()
	if err != nil {
		return err
	}
	key, err := NormalizeUserKey(owner)
	if err != nil {
		return fmt.Errorf("verify owner signature: %w", err)
	}
	if len(sig) == 0 {
		return fmt.Errorf("verify owner signature: %w", ErrMissingSignature)
	}
	if err := verifySig(key, msg, sig); err != nil {
		return fmt.Errorf("verify owner signature: %w", err)
	}
	return nil
}

// SigningBytes returns the bytes the owner signs for r (see "Owner
// signatures" in the package documentation); OwnerSig does not affect them.
func (r *InviteRequest) SigningBytes() ([]byte, error) {
	c := *r
	c.OwnerSig = nil
	return ownerSigningBytes(RoomsInvite, &c)
}

// SignOwner sets r.OwnerSig to the signature of the owner's user key pair kp
// over r.SigningBytes. Set every other field first.
func (r *InviteRequest) SignOwner(kp Signer) error {
	sig, err := signOwner(kp, r.SigningBytes)
	if err != nil {
		return err
	}
	r.OwnerSig = sig
	return nil
}

// VerifyOwner checks that r.OwnerSig is the signature of owner, the room
// owner's public key, over r.SigningBytes. The error matches
// ErrMissingSignature, ErrBadSignature or ErrInvalidUserKey.
func (r *InviteRequest) VerifyOwner(owner string) error {
	return verifyOwner(owner, r.SigningBytes, r.OwnerSig)
}

// SigningBytes returns the bytes the owner signs for r (see "Owner
// signatures" in the package documentation); OwnerSig does not affect them.
func (r *RemoveRequest) SigningBytes() ([]byte, error) {
	c := *r
	c.OwnerSig = nil
	return ownerSigningBytes(RoomsRemove, &c)
}

// SignOwner sets r.OwnerSig to the signature of the owner's user key pair kp
// over r.SigningBytes. Set every other field first.
func (r *RemoveRequest) SignOwner(kp Signer) error {
	sig, err := signOwner(kp, r.SigningBytes)
	if err != nil {
		return err
	}
	r.OwnerSig = sig
	return nil
}

// VerifyOwner checks that r.OwnerSig is the signature of owner, the room
// owner's public key, over r.SigningBytes. The error matches
// ErrMissingSignature, ErrBadSignature or ErrInvalidUserKey.
func (r *RemoveRequest) VerifyOwner(owner string) error {
	return verifyOwner(owner, r.SigningBytes, r.OwnerSig)
}

// SigningBytes returns the bytes the owner signs for r (see "Owner
// signatures" in the package documentation); OwnerSig does not affect them.
func (r *RekeyRequest) SigningBytes() ([]byte, error) {
	c := *r
	c.OwnerSig = nil
	return ownerSigningBytes(RoomsRekey, &c)
}

// SignOwner sets r.OwnerSig to the signature of the owner's user key pair kp
// over r.SigningBytes. Set every other field first.
func (r *RekeyRequest) SignOwner(kp Signer) error {
	sig, err := signOwner(kp, r.SigningBytes)
	if err != nil {
		return err
	}
	r.OwnerSig = sig
	return nil
}

// VerifyOwner checks that r.OwnerSig is the signature of owner, the room
// owner's public key, over r.SigningBytes. The error matches
// ErrMissingSignature, ErrBadSignature or ErrInvalidUserKey.
func (r *RekeyRequest) VerifyOwner(owner string) error {
	return verifyOwner(owner, r.SigningBytes, r.OwnerSig)
}
