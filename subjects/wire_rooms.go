package subjects

import (
	"encoding/json"
	"time"
)

// Room modes (CreateRoomRequest.Mode, RoomInfo.Mode, RoomRef.Mode).
const (
	// ModeE2E is an end-to-end encrypted room: frames are sealed with a
	// per-epoch room key that the services never see. It is the default.
	ModeE2E = "e2e"
	// ModeCleartext is a room whose frames are signed but not sealed; a
	// deployment may refuse such rooms by policy.
	ModeCleartext = "cleartext"
)

// History policies of a room (CreateRoomRequest.History, RoomInfo.History,
// RoomRef.History).
const (
	// HistoryKeep, the default for new rooms, stores the room's frames,
	// exactly as sealed, in the room log: members read them back
	// (RoomsHistory) from the point they were invited, and a subscription
	// resumes where it stopped. The deployment bounds how long and how
	// many frames a room keeps; a room may keep them for less
	// (CreateRoomRequest.HistoryMaxAge).
	HistoryKeep = "keep"
	// HistoryNone stores nothing: members see what is sent while they are
	// subscribed, and frames carry no sequence (SendAck.Seq is 0).
	HistoryNone = "none"
)

// Member roles (MemberInfo.Role, RoomRef.Role).
const (
	// RoleOwner is the room's creator, who alone may invite, remove and
	// rekey.
	RoleOwner = "owner"
	// RoleMember is any other member.
	RoleMember = "member"
	// RoleInvited is a user invited to the room that has not yet
	// accepted (RoomsAccept) or declined (RoomsDecline): not a member. It
	// is listed by RoomsMembers (MemberInfo.Role) so that the owner's
	// rekeys seal to it, and by RoomsInvite's reply; it grants nothing
	// else, and the invitee's own RoomsMembers query (MembersRequest.Pub)
	// about it answers "not a member".
	RoleInvited = "invited"
)

// GrantLen is the length of a key grant (CreateRoomRequest.Grant,
// InviteRequest.Grant, RekeyRequest.Grants, KeyResponse.Grant,
// MemberInfo.Grant): an Ed25519 signature.
const GrantLen = 64

// CreateRoomRequest is the body of RoomsCreate; the caller becomes the owner.
// Reply: RoomInfo.
type CreateRoomRequest struct {
	// RoomID is the new room's ID, made by the client with NewRoomID from
	// its own key: RoomIDFor(caller, Mode, Salt), or 400. Required in an
	// encrypted room, because SealedKey binds it; in a cleartext room the
	// service makes one when RoomID and Salt are both empty. An ID in use
	// is 409.
	RoomID string `json:"room_id,omitempty"`
	// Salt is the salt RoomID was made with (RoomSaltLen bytes).
	Salt []byte `json:"salt,omitempty"`
	// Name is an optional display name.
	Name string `json:"name,omitempty"`
	// Mode is ModeE2E (the default when empty) or ModeCleartext.
	Mode string `json:"mode,omitempty"`
	// History is HistoryKeep (the default when empty) or HistoryNone.
	History string `json:"history,omitempty"`
	// HistoryMaxAge, with HistoryKeep, keeps the room's frames for less
	// than the deployment does: a Go duration ("72h"), at least a minute and
	// at most the deployment's maximum age. Empty means the deployment's.
	HistoryMaxAge string `json:"history_max_age,omitempty"`
	// SealedKey is, in an encrypted room, the room key of epoch 1 sealed to
	// the owner's own encryption key. Empty in cleartext rooms.
	SealedKey []byte `json:"sealed_key,omitempty"`
	// Grant is, in an encrypted room, the owner's key grant of epoch 1 to
	// itself (GrantLen bytes; see the e2e package). Empty in cleartext
	// rooms.
	Grant []byte `json:"grant,omitempty"`
}

// RoomInfo describes a room: the reply of RoomsCreate, RoomsGet, RoomsAccept,
// RoomsRemove, RoomsLeave and RoomsRekey (the latter three after the
// change).
type RoomInfo struct {
	// RoomID is the room's ID (see NewRoomID).
	RoomID string `json:"room_id"`
	// Subject is the subject of the room's frames, Room(RoomID).
	Subject string `json:"subject"`
	// Name is the display name, if any.
	Name string `json:"name,omitempty"`
	// Mode is ModeE2E or ModeCleartext.
	Mode string `json:"mode"`
	// History is HistoryKeep or HistoryNone.
	History string `json:"history"`
	// HistoryMaxAge is the room's own maximum age of frames, a Go duration,
	// when it keeps them for less than the deployment does.
	HistoryMaxAge string `json:"history_max_age,omitempty"`
	// Owner is the owner's public key.
	Owner string `json:"owner"`
	// Salt is the salt of RoomID: a client checks CheckRoomOwner(RoomID,
	// Owner, Mode, Salt) before it trusts Owner and Mode.
	Salt []byte `json:"salt,omitempty"`
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

// RoomRequest is the body of RoomsGet, RoomsLeave, RoomsAccept and
// RoomsDecline: a request about one room.
type RoomRequest struct {
	// RoomID is the room's ID.
	RoomID string `json:"room_id"`
}

// InviteRequest is the body of RoomsInvite: the owner proposes that Pub
// join the room. The invitation is pending until Pub accepts it
// (RoomsAccept) or declines it (RoomsDecline), and it expires after the
// service's invitation lifetime (seven days by default); until accepted it
// grants Pub nothing and counts against none of Pub's quotas. In an
// encrypted room it carries the current epoch's room key sealed to the
// invitee, which the owner's rekeys keep current while it is pending.
// OwnerSig is the owner's signature (see SignOwner). Reply: MemberInfo,
// with Role RoleInvited. An existing member or a pending invitation is 409.
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
	// Grant is the owner's key grant of Epoch to the invitee (GrantLen
	// bytes): required with SealedKey, empty in cleartext rooms.
	Grant []byte `json:"grant,omitempty"`
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
	// Grants maps the same keys to the owner's key grants of ToEpoch
	// (GrantLen bytes each).
	Grants map[string][]byte `json:"grants"`
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
	// Grants maps the same keys to the owner's key grants of ToEpoch
	// (GrantLen bytes each).
	Grants map[string][]byte `json:"grants"`
	// OwnerSig is the owner's Ed25519 signature over SigningBytes.
	OwnerSig []byte `json:"owner_sig,omitempty"`
}

// MemberInfo describes a room member or a pending invitee: the reply of
// RoomsInvite and an element of MembersResponse.
type MemberInfo struct {
	// Pub is the member's public key.
	Pub string `json:"pub"`
	// Role is RoleOwner, RoleMember or, for an invitation not yet
	// accepted, RoleInvited.
	Role string `json:"role"`
	// JoinedEpoch is the room's epoch when the member joined (for an
	// invitee, when it was invited); the member holds keys from this
	// epoch on.
	JoinedEpoch uint64 `json:"joined_epoch"`
	// EncKey and EncKeySig are the member's encryption key and the
	// identity's binding signature over it (see VerifyEncKeyBinding), in
	// the RoomsMembers reply, so that an owner seals a rekey from one
	// request. Empty when the member has not set a key.
	EncKey    []byte `json:"enc_key,omitempty"`
	EncKeySig []byte `json:"enc_key_sig,omitempty"`
	// EncKeyVersion and EncKeyIssuedAt are the binding's number and time
	// (see UserInfo).
	EncKeyVersion  uint64    `json:"enc_key_version,omitempty"`
	EncKeyIssuedAt time.Time `json:"enc_key_issued_at,omitzero"`
	// Grant is, in an encrypted room, the owner's key grant to the member
	// at the room's current epoch, so that the owner checks the member
	// list against its own grants before it seals a rekey. Empty in
	// cleartext rooms.
	Grant []byte `json:"grant,omitempty"`
}

// MembersRequest is the body of RoomsMembers. Reply: MembersResponse.
type MembersRequest struct {
	// RoomID is the room's ID.
	RoomID string `json:"room_id"`
	// Pub, when set, asks about this one user: the reply lists it if it
	// is a current member, and is empty otherwise (revoked users and
	// pending invitees included). A receiver checks a new sender this way
	// without fetching the whole list.
	Pub string `json:"pub,omitempty"`
}

// MembersResponse is the reply of RoomsMembers.
type MembersResponse struct {
	// Members lists the room's current members, revoked users left out,
	// the owner first, then by key, followed by the pending invitees
	// (RoleInvited) by key: the owner seals a rekey to all of them. With
	// MembersRequest.Pub, that user alone if it is a member, or none.
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
	// History is the room's history policy, the same value as
	// RoomInfo.History: HistoryKeep or HistoryNone. On the wire it is "policy", as it
	// always was.
	History string `json:"policy"`
	// Role is the caller's role, RoleOwner or RoleMember.
	Role string `json:"role"`
	// Mode is ModeE2E or ModeCleartext. A peer must refuse cleartext
	// frames in a ModeE2E room.
	Mode string `json:"mode"`
	// Name is the room's display name, if any, and Owner its owner's key,
	// so that a list of rooms needs no request per room.
	Name  string `json:"name,omitempty"`
	Owner string `json:"owner,omitempty"`
	// Salt is the salt of RoomID (see RoomInfo.Salt).
	Salt []byte `json:"salt,omitempty"`
}

// Invitation is a pending invitation of the caller's (MineResponse): a room
// whose owner proposed that the caller join it. It grants nothing until
// the caller accepts it (RoomsAccept); it may decline it (RoomsDecline),
// and it expires at ExpiresAt. It is also the reply of RoomsDecline (the
// invitation declined).
type Invitation struct {
	// RoomID is the room's ID.
	RoomID string `json:"room_id"`
	// Name is the room's display name, if any: the owner's choice, which
	// may read like the name of another room.
	Name string `json:"name,omitempty"`
	// Mode is ModeE2E or ModeCleartext.
	Mode string `json:"mode"`
	// Owner is the room owner's public key, who invited the caller, and
	// Salt the salt of RoomID: a client checks CheckRoomOwner(RoomID,
	// Owner, Mode, Salt) before it trusts Owner and Mode.
	Owner string `json:"owner"`
	Salt  []byte `json:"salt,omitempty"`
	// Epoch is the room's epoch at the invitation: once accepted, the
	// caller holds the room keys from this epoch on.
	Epoch uint64 `json:"epoch"`
	// InvitedAt is when the owner invited the caller, and ExpiresAt when
	// the invitation lapses unanswered.
	InvitedAt time.Time `json:"invited_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// MineResponse is the reply of RoomsMine (the request body is empty).
type MineResponse struct {
	// Rooms lists the rooms the caller is a member of.
	Rooms []RoomRef `json:"rooms"`
	// Invitations lists the caller's pending invitations, by room ID:
	// rooms it may accept (RoomsAccept) or decline (RoomsDecline), of
	// which it is not a member yet.
	Invitations []Invitation `json:"invitations"`
}

// MarshalJSON encodes empty lists as [] rather than null.
func (r MineResponse) MarshalJSON() ([]byte, error) {
	type plain MineResponse
	if r.Rooms == nil {
		r.Rooms = []RoomRef{}
	}
	if r.Invitations == nil {
		r.Invitations = []Invitation{}
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
	// Grant is the owner's key grant of Epoch to the caller: the caller
	// checks it before it uses the key. Empty for a key stored before
	// grants existed, which clients refuse.
	Grant []byte `json:"grant,omitempty"`
}
