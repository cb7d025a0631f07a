// Package subjects is the single source of truth for the names and formats
// that unibus peers and services share on the wire:
//
//   - every NATS subject (control-plane endpoints, room frames, peer inboxes,
//     and the wildcards that permissions are built from), with validation of
//     every token before a subject is built;
//   - room IDs and user public keys, the values that become subject tokens
//     and KV keys;
//   - the signed-request format of the control plane (SignRequest,
//     VerifyRequest);
//   - the JSON request and reply bodies of every control-plane endpoint, the
//     error body, and the owner and encryption-key signatures they carry.
//
// No other package spells a unibus subject: call sites use the constants and
// builders here, never string concatenation.
//
// # Control-plane endpoints
//
// Each service is a nats.go micro service whose group is UsersGroup,
// RoomsGroup or BlobsGroup and whose endpoint names are the Endpoint…
// constants, so that group + "." + endpoint is a subject constant
// (UsersAdd…). Requests are signed (see SignRequest); replies are the types
// below or, on failure, an ErrorBody. This table is Endpoints (a test keeps
// it so), which the services register:
//
//	subject                  request            reply              who may call
//	unibus.v1.users.add      AddUserRequest     UserInfo           administrators
//	unibus.v1.users.get      GetUserRequest     UserInfo           any registered user
//	unibus.v1.users.list     ListUsersRequest   ListUsersResponse  administrators
//	unibus.v1.users.revoke   RevokeUserRequest  UserInfo           administrators
//	unibus.v1.users.setkey   SetKeyRequest      UserInfo           any registered user, for itself
//	unibus.v1.users.events   EventsRequest      EventsResponse     any registered user, for itself
//	unibus.v1.rooms.create   CreateRoomRequest  RoomInfo           any registered user
//	unibus.v1.rooms.get      RoomRequest        RoomInfo           members of the room
//	unibus.v1.rooms.invite   InviteRequest      MemberInfo         the room owner, with owner_sig over the request (subjects.SignOwner)
//	unibus.v1.rooms.accept   RoomRequest        RoomInfo           any registered user, for itself
//	unibus.v1.rooms.decline  RoomRequest        Invitation         any registered user, for itself
//	unibus.v1.rooms.remove   RemoveRequest      RoomInfo           the room owner, with owner_sig over the request (subjects.SignOwner)
//	unibus.v1.rooms.leave    RoomRequest        RoomInfo           members of the room
//	unibus.v1.rooms.members  MembersRequest     MembersResponse    members of the room
//	unibus.v1.rooms.mine     (empty)            MineResponse       any registered user
//	unibus.v1.rooms.rekey    RekeyRequest       RoomInfo           the room owner, with owner_sig over the request (subjects.SignOwner)
//	unibus.v1.rooms.key      KeyRequest         KeyResponse        members of the room
//	unibus.v1.rooms.history  HistoryRequest     HistoryResponse    members of the room
//	unibus.v1.blobs.put      BlobPutRequest     BlobInfo           members of the room
//	unibus.v1.blobs.get      BlobGetRequest     BlobChunk          members of the room
//
// # Signed requests
//
// Every control-plane request carries the headers HeaderPub, HeaderTs,
// HeaderNonce and HeaderSig: an Ed25519 signature by the caller's identity
// over CanonicalRequest. Clients call SignRequest; services call
// VerifyRequest, then claim the nonce and look the signer up.
//
// # Wire format
//
// Bodies are JSON with snake_case keys; optional fields are omitted when
// empty; []byte fields are standard padded base64 (encoding/json's default);
// times are RFC 3339. Lists in replies encode as [] when empty, never null.
// Errors are an ErrorBody with one of the Code… constants; Go callers match
// them with errors.Is against the Err… sentinels of Error.
//
// # Owner signatures
//
// Owner-only requests (OwnerSigned: InviteRequest, RemoveRequest,
// RekeyRequest) carry, in OwnerSig, the room owner's Ed25519 signature
// (identity key, SignOwner) over
//
//	"unibus-owner-v1\n" + op + "\n" + hex(sha256(J))
//
// where op is the request's subject (RoomsInvite, RoomsRemove or RoomsRekey)
// and J is the request as encoding/json encodes it with OwnerSig empty: keys
// in declared order, no whitespace, empty optional fields (owner_sig among
// them) omitted, []byte as padded standard base64, map keys sorted, strings
// escaped as encoding/json escapes them (valid requests hold only ASCII
// letters, digits and base64, so any encoder that follows these rules
// agrees). The service decodes the body, re-encodes it the same way and
// verifies it against the room's owner (VerifyOwner), so what is signed is
// exactly what the service acts on, and the bundle of sealed keys is
// authentic end to end, not only over the transport.
//
// A user's encryption key is bound to the identity the same way: the
// identity signs EncKeyBindingMessage (SignEncKeyBinding), and anyone can
// check the binding (VerifyEncKeyBinding) before sealing a room key to it.
// Bindings are numbered and dated: the service takes only a version above
// the registered one, and a client remembers the newest version it has
// seen of each user and refuses an older one, so that a server cannot
// replay a replaced (perhaps stolen) key with its old, valid binding to
// an owner who has seen the new one.
//
// # Owner-bound room IDs and key grants
//
// A room ID names its owner: it is RoomIDFor(owner, mode, salt), the first 16
// bytes of SHA-256("unibus-room-id-v1\n" + owner + "\n" + salt) in
// unpadded base64url, with a salt of RoomSaltLen random bytes (NewRoomID).
// CreateRoomRequest carries the salt, the service refuses an ID that is not
// the caller's (400), and RoomInfo and RoomRef return the salt, so that
// anyone checks CheckRoomOwner before trusting a room's owner: no one can
// choose an ID that reads like a name, and a server cannot swap a room's
// owner for a key of its own.
//
// Every sealed room key travels with a grant: the owner's Ed25519
// signature (GrantLen bytes) over the room ID, the epoch, the member and a
// commitment to the room key (the e2e package makes and checks them). A
// grant is required beside every sealed key the owner sends
// (CreateRoomRequest.Grant, InviteRequest.Grant, RekeyRequest.Grants and
// RekeyBundle.Grants, for exactly the members of Keys), and returned with
// it (KeyResponse.Grant) and per member for the current epoch
// (MemberInfo.Grant). The service cannot check a grant, since it never
// knows the room key; members do before they use a key, so that whoever
// controls the servers or buckets can deny service but can neither add a
// reader nor choose a room key.
//
// MembersRequest.Pub asks about one user: the reply lists it if it is a
// current member (revoked users and pending invitees are not), and is
// empty otherwise.
//
// # Invitations
//
// An invitation is a proposal (as in Matrix): RoomsInvite stores it, with
// the invitee's sealed key of the current epoch in an encrypted room, and
// the invitee accepts it (RoomsAccept, reply RoomInfo) or declines it
// (RoomsDecline, reply the Invitation declined); unanswered, it expires
// after the service's invitation lifetime (seven days by default). Until
// accepted it grants the invitee nothing (no room subject, no room key, no
// room read) and counts against none of its quotas, so no one can fill
// another user's room list or quota by inviting it. A pending invitee is
// listed by RoomsMembers with RoleInvited, so that the owner's rekeys seal
// to it and it holds a current key when it accepts; it counts against the
// room's member limit; the owner cancels it with RoomsRemove (in an
// encrypted room with a rekey, as for a member). RoomsMine lists the
// caller's invitations (MineResponse.Invitations).
//
// This package imports only the standard library, nats.go (for nats.Header)
// and nkeys, so that both the client and the services can depend on it.
package subjects
