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
//	unibus.v1.rooms.create   CreateRoomRequest  RoomInfo           any registered user
//	unibus.v1.rooms.get      RoomRequest        RoomInfo           members of the room
//	unibus.v1.rooms.invite   InviteRequest      MemberInfo         the room owner, with owner_sig over the request (subjects.SignOwner)
//	unibus.v1.rooms.remove   RemoveRequest      RoomInfo           the room owner, with owner_sig over the request (subjects.SignOwner)
//	unibus.v1.rooms.leave    RoomRequest        RoomInfo           members of the room
//	unibus.v1.rooms.members  RoomRequest        MembersResponse    members of the room
//	unibus.v1.rooms.mine     (empty)            MineResponse       any registered user
//	unibus.v1.rooms.rekey    RekeyRequest       RoomInfo           the room owner, with owner_sig over the request (subjects.SignOwner)
//	unibus.v1.rooms.key      KeyRequest         KeyResponse        members of the room
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
//
// This package imports only the standard library, nats.go (for nats.Header)
// and nkeys, so that both the client and the services can depend on it.
package subjects
