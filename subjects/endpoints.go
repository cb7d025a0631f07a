package subjects

import (
	"reflect"
	"slices"
)

// Access says who may call an endpoint, in words ("nats micro info" shows
// it).
type Access string

// Who may call an endpoint.
const (
	AccessAdmin  Access = "administrators"
	AccessUser   Access = "any registered user"
	AccessSelf   Access = "any registered user, for itself"
	AccessMember Access = "members of the room"
	AccessOwner  Access = "the room owner, with owner_sig over the request (subjects.SignOwner)"
)

// Endpoint describes one control-plane endpoint. Endpoints lists them all;
// the services, their configuration, their discovery metadata and the
// documentation iterate that list.
type Endpoint struct {
	// Subject is Group + "." + Name (RoomsInvite…): micro's Service,
	// group and endpoint name (RoomsService, RoomsGroup, EndpointInvite…).
	Subject, Service, Group, Name string
	// Request and Reply are the types of the JSON bodies; struct{} is an
	// empty body.
	Request, Reply reflect.Type
	Access         Access
	// Bundle: the body may carry sealed room keys or a blob chunk, and so
	// has the larger size limit. OwnerSigned: the request is OwnerSigned.
	Bundle, OwnerSigned bool
	// Summary says in one line what the endpoint does.
	Summary string
}

// endpoint builds a table entry.
func endpoint[Req, Reply any](service, group, name string, access Access, bundle bool, summary string) Endpoint {
	req := reflect.TypeFor[Req]()
	return Endpoint{
		Subject: group + sep + name, Service: service, Group: group, Name: name,
		Request: req, Reply: reflect.TypeFor[Reply](),
		Access: access, Bundle: bundle, Summary: summary,
		OwnerSigned: reflect.PointerTo(req).Implements(reflect.TypeFor[OwnerSigned]()),
	}
}

var endpoints = []Endpoint{
	endpoint[AddUserRequest, UserInfo](UsersService, UsersGroup, EndpointAdd, AccessAdmin, false,
		"register a user, optionally as an administrator"),
	endpoint[GetUserRequest, UserInfo](UsersService, UsersGroup, EndpointGet, AccessUser, false,
		"read a user, with the encryption key to seal room keys to"),
	endpoint[ListUsersRequest, ListUsersResponse](UsersService, UsersGroup, EndpointList, AccessAdmin, false,
		"list users a page at a time (after, limit; the reply's next), revoked ones included"),
	endpoint[RevokeUserRequest, UserInfo](UsersService, UsersGroup, EndpointRevoke, AccessAdmin, false,
		"revoke a user (not the last administrator)"),
	endpoint[SetKeyRequest, UserInfo](UsersService, UsersGroup, EndpointSetKey, AccessSelf, false,
		"publish the caller's encryption key, bound to its identity by enc_key_sig"),
	endpoint[EventsRequest, EventsResponse](UsersService, UsersGroup, EndpointEvents, AccessSelf, false,
		"read the caller's events (invitations, removals, rekeys, revocation) from a sequence on"),

	endpoint[CreateRoomRequest, RoomInfo](RoomsService, RoomsGroup, EndpointCreate, AccessUser, true,
		"create a room owned by the caller (e2e: with its room_id and the epoch-1 key sealed to the caller)"),
	endpoint[RoomRequest, RoomInfo](RoomsService, RoomsGroup, EndpointGet, AccessMember, false,
		"read a room"),
	endpoint[InviteRequest, MemberInfo](RoomsService, RoomsGroup, EndpointInvite, AccessOwner, true,
		"invite a user: a proposal it accepts or declines, with the current epoch's key sealed to it (e2e); it grants nothing until accepted"),
	endpoint[RoomRequest, RoomInfo](RoomsService, RoomsGroup, EndpointAccept, AccessSelf, false,
		"accept the caller's pending invitation to a room: it becomes a member"),
	endpoint[RoomRequest, Invitation](RoomsService, RoomsGroup, EndpointDecline, AccessSelf, false,
		"decline the caller's pending invitation to a room"),
	endpoint[RemoveRequest, RoomInfo](RoomsService, RoomsGroup, EndpointRemove, AccessOwner, true,
		"remove a member; in an e2e room with the rekey for the remaining members"),
	endpoint[RoomRequest, RoomInfo](RoomsService, RoomsGroup, EndpointLeave, AccessMember, false,
		"leave a room (not its owner); an e2e room is not rekeyed, its owner should rekey"),
	endpoint[MembersRequest, MembersResponse](RoomsService, RoomsGroup, EndpointMembers, AccessMember, false,
		"list a room's members"),
	endpoint[struct{}, MineResponse](RoomsService, RoomsGroup, EndpointMine, AccessUser, false,
		"list the caller's rooms"),
	endpoint[RekeyRequest, RoomInfo](RoomsService, RoomsGroup, EndpointRekey, AccessOwner, true,
		"start epoch to_epoch (the room's next_epoch), compare-and-set on from_epoch"),
	endpoint[KeyRequest, KeyResponse](RoomsService, RoomsGroup, EndpointKey, AccessMember, false,
		"fetch the caller's sealed room key for an epoch (0: the current one)"),
	endpoint[HistoryRequest, HistoryResponse](RoomsService, RoomsGroup, EndpointHistory, AccessMember, false,
		"read a page of the room log, from the caller's invitation on: from a sequence or a time, or the last N"),

	// A chunk is about 700 KB of JSON: blobs.put has the bundle limit.
	endpoint[BlobPutRequest, BlobInfo](BlobsService, BlobsGroup, EndpointPut, AccessMember, true,
		"store one chunk of a blob; the last chunk completes the blob once the chunks, in order, match its SHA-256"),
	endpoint[BlobGetRequest, BlobChunk](BlobsService, BlobsGroup, EndpointGet, AccessMember, false,
		"read one chunk of a complete blob"),
}

// Endpoints returns every control-plane endpoint, service by service in
// the order users, rooms, blobs. The slice is the caller's.
func Endpoints() []Endpoint { return slices.Clone(endpoints) }
