// Package router runs the routing service of durable delivery: the NATS
// micro service unibus-router, which takes every frame a member sends,
// checks it, appends it to the room log and delivers it to every member.
//
//	r, err := router.Start(ctx, router.Config{Conn: nc, Store: store, Logger: log, Version: version})
//	...
//	defer r.Stop()
//
// A member never publishes to a room. It sends a frame (the client/e2e
// wire format, sealed in an encrypted room) to subjects.Send(room,
// itself), "unibus.v1.send.<room>.<sender>", as a request (acknowledged)
// or a plain publish (fire-and-forget); its permissions allow only its own
// key there (subjects.SendOf), so the server attests the sender. The
// service's one endpoint, "send", listens on subjects.SendAll in queue
// group subjects.RouterQueue: any number of instances, on any nodes,
// share the sends, and "nats micro ls/info/stats" shows them.
//
// # A send's way
//
// On micro's handler, which never waits, in this order; the first check
// that fails answers:
//
//  1. the reply subject: none, or an inbox of the sender's own
//     (subjects.InboxOwner). Anything else (another user's inbox, a
//     bucket's subject) is dropped unanswered, stored nowhere and counted
//     as misdirected: a reply is a publish with the router's rights to a
//     subject the sender chose. A subject that is no send subject is
//     dropped the same way;
//  2. the size: at most Config.MaxFrameBytes → 413;
//  3. membership, in the store's membership view (kvstore.MembershipView,
//     in memory, following the buckets): a current member, owner or
//     member, not an invitee, not revoked → 403 "not a member", 404 "room
//     not found"; a view that cannot vouch for being current → 503 (fail
//     closed). The view follows the store a little behind it, so a send it
//     does not admit waits in a recheck lane (bounded, 1024 sends) and is
//     checked again every 5 ms for up to 200 ms before it is refused: a
//     member's first send right after it joined, or an owner's right after
//     it created the room, is not refused for the view's lag. A sender's
//     later sends to the room follow its waiting one, in order;
//  4. the sender's rate: a token bucket per member per instance,
//     Config.SendRate a second in bursts of Config.SendBurst → 429 with a
//     retry hint (subjects.HeaderRetryAfter);
//  5. a shard: the send joins the queue of the shard its room hashes to
//     (Config.Shards goroutines, Config.ShardQueue sends each; a full
//     queue → 503 at once, retry).
//
// Each shard handles its rooms' sends one at a time, in arrival order:
//
//  6. the frame: well formed (e2e.Decode), its room and sender those of
//     the subject, cleartext exactly in a cleartext room → 400. Its
//     signature is not verified: the sender is attested, so a bad
//     signature spoils only the sender's own frame, and every receiver
//     verifies each frame and the sender's key grant anyway;
//  7. the log, in a room that keeps history (subjects.HistoryKeep):
//     kvstore.Store.AppendFrame stores the frame as sent, with the
//     frame's ID as its message ID (a retried send is stored once: the ack
//     says Duplicate, with the first copy's sequence, and it is delivered
//     again under that sequence, which members that have it drop) and the room's chain (subjects.HeaderPrev, which
//     JetStream checks) → 503 when it cannot;
//  8. the deliveries: the frame, unchanged, to subjects.Deliver(member,
//     room) for every current member, the sender included, with headers
//     subjects.HeaderSeq (its sequence; "0" in a room without history) and
//     subjects.HeaderPrev (the room's previous stored frame, "0" for
//     none). A delivery that cannot be published is logged and counted:
//     the member fills the gap from the log (rooms.history);
//  9. the ack, to an acknowledged send: subjects.SendAck {id, seq,
//     duplicate}.
//
// Refusals are the control plane's errors: the Nats-Service-Error-Code
// and Nats-Service-Error headers and a subjects.ErrorBody, with messages
// for humans that never carry store or Go error text.
//
// # Order
//
// The frames of one room that reach one instance are stored and delivered
// in the order they arrived. With several instances a room's frames may
// reach different ones: the log's chain still orders them (the store
// retries an append that lost the race), but their deliveries may
// interleave; a member that receives a frame whose HeaderPrev is not the
// last sequence it holds fetches the frames between from the log.
//
// # Limits
//
// DefaultMaxFrameBytes is 768 KiB: a stored frame comes back to a member
// in a history reply, a page that always holds at least one frame, so the
// largest frame's base64 (4/3 of it) and the page around it must fit in a
// reply under authcallout.MinPublishBytes, the smallest publish limit a
// deployment may set; 768 KiB is exactly 1 MiB in base64, with 16 KiB to
// spare. It holds the largest frame client/e2e seals. A deployment with a
// larger publish limit may raise it (package node checks that the
// history reply of the largest frame fits), up to e2e.MaxFrameSize, which
// receivers enforce.
//
// # Stats and stopping
//
// The endpoint's stats "data" (StatsData) counts what micro cannot see:
// sends received, accepted, stored, duplicates, deliveries, refusals by
// code, misdirected sends and those admitted on a recheck. Stop drains the
// subscription (new sends go to other instances), refuses what still
// waits for the view (503), lets the shards finish their queues and
// returns once every accepted send is stored, delivered and acknowledged.
package router
