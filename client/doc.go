// Package client is the Go client of unibus: Connect is the single seam
// through which bots, workers, chat clients and mobile apps reach the bus.
//
// A connection always authenticates with the caller's nkey identity (the
// server's nonce is signed with identity.SignNonce, which signs nothing but
// a nonce of nats-server's form, so no server gets an application
// signature out of a login), uses the per-user inbox prefix _INBOX.<pub>
// that the auth callout grants, and, when given a CA, speaks TLS pinned to
// that CA and refuses plaintext URLs. Without WithInsecure it refuses
// plaintext to any server beyond loopback (ErrInsecureURL), including
// servers the cluster announces. It reconnects for ever
// (a revocation disconnects it on purpose; membership changes never do),
// and nats.go restores its subscriptions on reconnect.
//
// # Sending and receiving
//
// A member never publishes to a room itself: it sends each frame to the
// routing service on a subject of its own (subjects.Send), so the server
// attests the sender, and the service checks membership, stores the frame
// in the room log (in a room that keeps history, the default) and
// delivers it into each member's inbox (subjects.Deliver) with its
// sequence in the log and the sequence of the frame before it. Publish is
// acknowledged by default (Sent carries the sequence; a service that
// cannot store the frame now is retried with the same frame, which the
// log stores once) or fire-and-forget (NoAck). Subscribe starts where the
// caller says (NewOnly, FromSeq, Since, Last), reads that part from the
// log, then follows the deliveries in order: a delivery that does not
// follow the last one, a reconnect or messages nats.go dropped make it
// read the missing frames from the log, so that a subscription loses
// nothing and delivers nothing twice. History reads pages of the log, and
// Events the caller's durable events (invitations, removals, rekeys).
//
// A frame from the log is legitimately old, so the maximum frame age and
// the grace period of the previous epoch do not apply to it, nor the
// per-sender replay window (frames are opened in parallel, and one
// identity may send from several processes); each reader (a subscription,
// a page) drops duplicates by the log's sequences and the frames' IDs. What the servers can and cannot do
// to delivery is spelled out at Subscribe: drop, delay, withhold, reorder;
// never forge, add a reader, or deliver one frame twice to a
// subscription.
//
// # What the client does not take on trust
//
// Whoever controls the servers or the buckets can deny service, but the
// client never lets it add a reader to an encrypted room or choose its key:
//
//   - A room ID names its owner: CreateRoom makes it from the owner's key and
//     a random salt (subjects.NewRoomID), and every room state the client
//     learns (GetRoom, Subscribe, the receiver's refreshes) is checked with
//     subjects.CheckRoomOwner; a room whose owner does not match, or whose
//     owner or mode changed, is refused with ErrUntrustedRoom. The epoch
//     never goes back below one whose key the client holds
//     (ErrEpochRollback).
//   - An invitation is a proposal: Invite grants the invitee nothing (no
//     room in its list, no subject, no key) until it calls Accept;
//     Invitations lists the pending ones, each checked with
//     subjects.CheckRoomOwner, and Decline refuses one. So no one can put
//     a room among another user's rooms, or fill its room quota. The
//     owner's rekeys seal to pending invitees too, so an invitee that
//     accepts later reads the current epoch.
//   - The owner grants each member each epoch's room key by signature
//     (e2e.SignGrant): CreateRoom, Invite, Rekey and Remove send the grants
//     with the sealed keys. A room key fetched from the service is used only
//     if the owner's grant of it to this client verifies
//     (ErrUnauthenticatedKey otherwise, and the key is not kept).
//   - Before it seals a rekey, the owner checks every member the service
//     lists against its own grants of the current key: a member without one
//     is a ghost, and the rekey is refused with ErrUntrustedMember naming it
//     (Remove seals nothing to the member it removes, so it evicts a ghost).
//   - Every sealed frame carries its sender's grant, which receivers check
//     (once per sender and epoch, then cached): a frame from anyone the
//     owner did not grant the key to is refused, and checking a new sender
//     needs no request. Only cleartext rooms ask the service about a sender
//     (that one sender, not the member list); a positive answer holds 30
//     seconds, a negative one is asked again at most once a second, and
//     every answer is dropped on reconnect or when the room's state is
//     fetched again.
//   - A frame of an epoch the receiver does not know yet makes it refresh
//     the room only if the frame's signature verifies, and at most once a
//     second per room however many such frames arrive; a room key that
//     cannot be fetched is asked for again at most once a second.
//
// What it does not cover: the service can still refuse, delay or drop
// anything (a subscription notices a frame missing between two it got,
// but not frames withheld after the last one); it sees who is in which room; a client that first learns of a
// room takes its mode (encrypted or cleartext) from the service; and the
// highest verified epoch lives in memory, so rollback protection starts
// anew with each process.
//
// The client imports nats.go, never nats-server.
package client
