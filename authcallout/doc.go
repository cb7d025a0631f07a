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
//   - the user JWT issued for account UNIBUS grants publish on the control
//     plane and the user's rooms, subscribe on its own inbox and rooms, and
//     nothing under $JS, $KV, $O or $SRV (admins may use $SRV for micro
//     discovery); it expires after Config.UserTTL so permissions refresh.
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
// The user and its rooms are both read as fresh as the buckets' stream
// leaders know them (kvstore's GetUserFromLeader and
// ListRoomsForEndpointFromLeader, through LeaderRoomLister), so on a
// replicated store a member removed a moment ago is not admitted to the
// room by a follower the removal has not reached yet.
//
// Changes reach live connections: a Watcher follows the users bucket and the
// rooms-by-member index and, through the system account's CONNZ and KICK
// requests (Kicker), disconnects the affected user's connections on every
// server, so a revoked user is gone and a member whose rooms changed
// reconnects with the new permissions. Kicks run on a bounded set of
// workers; the changes of a user whose kick is waiting join it, so a flood
// of changes makes at most one kick per user per KickDelay; revocations go
// before membership refreshes and keep a worker of their own, so no flood
// delays them. A kick lists every page of the user's connections on every
// server, closes them, and lists again until none remain; a revocation
// closes every connection of the user and is retried until it sticks or
// the watcher stops (a reconnect is refused by the callout meanwhile).
//
// NATSConfig prints the nats-server configuration (accounts AUTH, UNIBUS,
// SYS and the auth_callout block) that the embedded server loads and that an
// operator's cluster needs: one source for both.
package authcallout
