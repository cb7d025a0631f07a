// Package authcallout admits only allowlisted nkey identities to the bus and
// grants each exactly its subjects.
//
// It answers nats-server's auth callout ($SYS.REQ.USER.AUTH) in three steps,
// after synadia-io/callout.go: decode the server's request (decrypting it
// when xkey encryption is on), authorize it against the store within a
// deadline, and sign (and encrypt) the response. Authorizing means:
//
//   - the client presented an nkey and signed the server's nonce with it: the
//     signature is verified here, so a client that presents someone else's
//     public key without its private key is refused;
//   - the key is a registered, unrevoked user in UNIBUS_users;
//   - the user JWT issued for account UNIBUS grants, by patterns on the
//     user's own key (Permissions): publish on the control plane and on its
//     own send subjects (subjects.SendOf, so the server attests the sender
//     of every frame the routing service receives); subscribe on its own
//     inbox, its own deliveries (subjects.DeliverOf) and its own events
//     (subjects.Events); nothing under $JS, $KV, $O or $SRV (admins may use
//     $SRV for micro discovery), nor the room log (subjects.RoomLogAll),
//     another user's deliveries or events, or anyone's sends; it expires
//     after Config.UserTTL so permissions refresh.
//
// The callout never reads the user's rooms: membership is checked by the
// routing service on every send, so the JWT, and the time a connect takes,
// are the same for a member of a thousand rooms as for a member of none,
// and a membership change needs no new permissions.
//
// Anything else, including any store error or a timeout, is a denial: the
// callout fails closed within Config.RequestTimeout.
//
// The work is bounded: Config.Workers authorizations at once, and
// Config.QueueLength waiting. A request that finds the queue full is
// denied at once, and one still waiting at Config.RequestTimeout (counted
// from its arrival) is denied then, even when every worker is stuck; both
// without a store read, so a connect storm is answered rather than left
// to the server's auth timeout.
//
// PeerLimits bound every connection of account UNIBUS: the largest message
// (frames and control-plane requests alike) and the number of
// subscriptions. NATSConfig writes them into the account, where
// nats-server enforces them; the callout also writes them into every user
// JWT, which nats-server 2.15 ignores for callout users.
//
// The user is read as fresh as the users stream's leader knows it
// (kvstore's GetUserFromLeader), so on a replicated store a user revoked a
// moment ago is not admitted by a follower the revocation has not reached
// yet, and a cluster that lost quorum admits no one.
//
// Revocations reach live connections: a Watcher follows the users bucket
// and, through the system account's CONNZ and KICK requests (Kicker),
// disconnects a revoked user's connections on every server, and those of
// a user whose admin flag changed (admins hold $SRV), which reconnect with
// the new permissions. Nothing else kicks: invitations, joins, removals
// and departures change what the routing service delivers, not what a
// connection may do. Kicks run on a bounded set of workers; the changes
// of a user whose kick is waiting join it, so a flood of changes makes at
// most one kick per user per KickDelay. A kick lists every page of the
// user's connections on every server, closes them, and lists again until
// none remain; a revocation closes every connection of the user and is
// retried until it sticks or the watcher stops (a reconnect is refused by
// the callout meanwhile).
//
// NATSConfig prints the nats-server configuration (accounts AUTH, UNIBUS,
// SYS and the auth_callout block) that the embedded server loads and that an
// operator's cluster needs: one source for both. It gives the deployment's
// own users (Keys) least privilege: the services' responder and the
// router publish only into inboxes (and the router into deliveries), and
// only the store user writes state, the room log and the events.
package authcallout
