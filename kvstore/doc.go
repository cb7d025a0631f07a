// Package kvstore keeps unibus state in replicated JetStream KV buckets:
// users, rooms, members, the rooms-by-member index, pending invitations,
// sealed room keys, anti-replay nonces and the records of blob uploads; the blobs
// themselves in an object store; and two streams: the room log (each
// room's frames, for durable delivery) and the users' events. Every node
// and every service instance shares it.
//
// # Buckets
//
//	UNIBUS_users            <pub>                  User
//	UNIBUS_rooms            <roomID>               Room (the authority on a room)
//	UNIBUS_members          <roomID>.<pub>         Member
//	UNIBUS_rooms_by_member  <pub>.<roomID>         reverse index for ListRoomsForEndpoint
//	UNIBUS_room_keys        <roomID>.<epoch>.<pub> SealedKey: room key sealed to that member, and its grant
//	UNIBUS_nonces           hex(sha256(nonce))     empty, per-key TTL
//	UNIBUS_invitations      <pub>.<roomID>         Invitation: pending, expires after InvitationTTL
//	UNIBUS_blob_uploads     blob.<roomID>.<blob>   Upload: uploader, size, state
//	                        user.<pub>.<roomID>.<blob>     the uploader's index entry
//	                        chunk.<roomID>.<blob>.<index>  a chunk's digest, set once
//	                        pending.<roomID>.<blob>        PendingUpload
//	UNIBUS_blobs (objects)  <roomID>/<blob>/<index>        chunk; <roomID>/<blob> manifest
//
// # Streams
//
//	UNIBUS_room_log  unibus.v1.room.<roomID>   a frame as sent; Nats-Msg-Id <roomID>/<frame ID>,
//	                                           Unibus-Prev the room's previous frame
//	UNIBUS_events    unibus.v1.events.<pub>    subjects.Event (JSON)
//
// The room log keeps each room's frames (AppendFrame) for
// Config.HistoryMaxAge (a room for less with its own Room.HistoryMaxAge, a
// per-message TTL), at most Config.HistoryMaxMsgsPerRoom per room and
// Config.HistoryMaxBytes in all, the oldest going first; a frame retried
// within HistoryDuplicateWindow is stored once. Only the store publishes
// to it. Every frame names the room's previous one (subjects.HeaderPrev),
// and the append is conditional on it (Nats-Expected-Last-Subject-Sequence):
// however many goroutines, stores and nodes append to a room at once, its
// frames form one chain, which lets a member tell a gap from nothing
// missed. A Store appends to a room one frame at a time and remembers the
// room's last sequence (for at most a few thousand idle rooms); an append
// that another store overtook retries with the sequence JetStream
// reports.
//
// A member reads the log from the position the log had when it was
// invited (Member.FromSeq, set by CreateRoom for the owner, by Invite and
// copied by AcceptInvitation, by AddMember; LogPosition) on: ReadLog
// pages forward with one batch direct get (any replica answers; a page
// that misses frames the stream's leader has is read again) or backward
// along the chain. Membership itself is the service's to check.
//
// The events stream keeps EventsMaxPerUser events per user for
// InvitationTTL (AppendEvent, ReadEvents).
//
// # Membership view
//
// WatchMembership loads every room's policy, owner and members and the
// revoked users into memory and follows the buckets, so that the routing
// service decides each send without a read. It fails closed: while it
// cannot vouch for being current (loading, a watch ended or stalled
// behind its bucket, the connection lost or replaced, a bucket's leader
// unreachable) Check answers ErrViewUnavailable, and it reloads in the
// background with backoff.
//
// # Storage
//
// The object store of blobs, the room log and the events stream have
// sizes; by default shares of the account's JetStream storage limit,
// which Open reads from the server: blobs half, the room log a quarter,
// the events a sixteenth, and the KV buckets the rest. Blobs and the room
// log together never take more than three quarters (Config.BlobStoreMaxBytes
// and Config.HistoryMaxBytes may be smaller, never larger). JetStream
// refuses blobs beyond their store's size and drops the oldest frames
// beyond the log's, so neither can take the room the KV buckets need: a
// signed request still claims its nonce when the blob store is full.
//
// A blob's upload record is created once (its first uploader owns the
// blob until it is complete), each chunk's digest is recorded once before
// the chunk is stored, and a room's or a user's blob usage is the sum of
// their records (BlobUsage reads both in one listing). RemoveUpload
// deletes an upload's records in an order that leaves a crashed removal
// findable by its record or its pending entry (PendingUploads).
//
// # Owner-bound rooms and key grants
//
// A room's ID is subjects.RoomIDFor(owner, mode, salt), and the room record keeps
// the salt (Room.Salt): CreateRoom refuses a salted room whose ID does not
// name its owner (ErrInvalid), and a salted record that does not is an
// invalid record when read, so a record whose owner was swapped behind the
// store's back is never served. A room without a salt (stored by a test or
// a version before owner-bound IDs) stays readable; clients refuse it.
//
// Every sealed room key is stored with the owner's grant of it
// (SealedKey.Grant, subjects.GrantLen bytes): the owner's signature over
// the room, the epoch, the member and a commitment to the room key, which
// only clients can check, so that whoever writes the buckets can add no
// reader and choose no key. CreateRoom, AddMember and RekeyTo require the
// grant beside each sealed key; GetRoomKey returns both; RoomGrants reads an
// epoch's grants in one direct get. The value of a key entry is
// "unibus-sealed-key-v1", the grant and the sealed key, in binary; a value
// written before grants existed, the bare sealed bytes, reads back as a
// SealedKey with an empty grant.
//
// Revoked users are not current members: a rekey must cover every member
// whose user record is not revoked, and no one else, so that a revoked
// user's member record, which stays, gets it no key of a later epoch.
//
// # Invitations
//
// An invitation is a proposal the invitee accepts or declines (Invite,
// AcceptInvitation, CancelInvitation). It is a record of its own bucket,
// keyed <invitee>.<roomID> so that an invitee lists its invitations with
// one filter and a room its invitees with another, and it expires after
// InvitationTTL (the bucket's TTL, and checked when read). Until accepted
// it grants nothing and counts against none of the invitee's quotas: the
// member records and the rooms-by-member index, which everything that
// grants access reads (the auth callout, membership checks, key fetches),
// are not written, and CountRoomsForEndpoint does not see it. In an
// encrypted room the invitee's sealed key of the invitation's epoch is in
// UNIBUS_room_keys, and a rekey must cover the pending invitees as well as
// the members (keyHolders), so that an invitee holds the current key when
// it accepts and becomes a member with JoinedEpoch the invitation's epoch.
//
// # Guarantees
//
// Every call is bounded by Config.OpTimeout (or the caller's earlier
// deadline). GetUserFromLeader and ClaimNonce, which admission relies on,
// fail closed: any backend error is returned, never a stale answer (the user
// read also checks that the stream's leader still hears a majority).
// ErrNotFound reports every miss.
//
// # Changes that touch several buckets
//
// Access is granted by three records read in this order of authority: the
// room record, the member record, and the reverse index (which the auth
// callout and ListRoomsForEndpoint read). Writes are ordered so that at every
// point index ⊆ members ⊆ rooms, which means a crash between two writes
// never grants more than the room record shows:
//
//   - CreateRoom: room record (Create) → owner's sealed key → owner's member
//     record → index. A crash leaves a room its owner cannot yet use; the
//     retry (same room) finds its own room record and completes the rest.
//   - AddMember: sealed key → member record → room record touched by
//     compare-and-set (membership version, epoch checked) → index. The touch
//     makes a concurrent rekey that did not include the newcomer fail its
//     final compare-and-set; if the room moved to another epoch first, the
//     member record is rolled back and ErrConflict returned. A retry after a
//     crash finds the member record and completes the touch and the index.
//   - Invite: sealed key → invitation (create-only) → room touched by
//     compare-and-set (membership version, epoch checked), which makes a
//     concurrent rekey that did not seal to the invitee fail; if the room
//     moved to another epoch first, the invitation is deleted again and
//     ErrConflict returned. Nothing that grants access is written.
//   - AcceptInvitation: member record → room touched (epoch checked; a
//     rekey that committed meanwhile sealed to the invitee too, checked
//     against its key of the new epoch) → index → invitation deleted. The
//     invitation stands until the last write, so a rekey in between seals
//     to the invitee, as a member or as an invitee; a retry after a crash
//     finds the member record and the invitation and completes the rest. A
//     member record without index and without invitation is a removal
//     left undone, never completed into access.
//   - CancelInvitation (decline, or removal by the owner): invitation
//     deleted → room touched.
//   - RemoveMember: index → member record → room touched. Access goes in the
//     reverse order of granting, so a crash leaves less access, never more;
//     the retry deletes what is left and touches the room again.
//   - Rekey: claim a fresh epoch number on the room record (compare-and-set,
//     epoch unchanged) → check the sealed keys cover exactly the current
//     (unrevoked) members and pending invitees → write them under the
//     claimed epoch → commit the
//     epoch by compare-and-set on the claim's revision. Claimed numbers are
//     never reused, so a crashed or losing rekey's keys can never be mixed
//     with the winner's; until the commit, readers keep using the previous
//     epoch. Two concurrent rekeys from the same epoch: exactly one commits,
//     the other gets ErrConflict. Epoch numbers may therefore skip values.
package kvstore
