// Package svc runs the unibus control plane: the NATS micro services
// unibus-users, unibus-rooms and unibus-blobs, on the subjects of package
// subjects, over the state of package kvstore. The frames themselves go
// through the routing service (package router), not through these.
//
//	s, err := svc.Start(ctx, svc.Config{Store: store, Conn: nc, Logger: log, Version: version})
//	...
//	defer s.Stop()
//
// The services are stateless: any number of instances, on any nodes, share
// the store, and micro's default queue group spreads requests among them.
// The services register exactly the endpoints of subjects.Endpoints, and
// refuse to start if one has no handler. Each service registers a version,
// a description and, per endpoint, metadata (summary, access, the JSON of request and reply derived from the
// wire types, the size limit), so "nats micro ls", "nats micro info
// unibus-rooms" and "nats micro stats" document and measure them. micro
// measures only the hand-off to a worker; each endpoint's stats "data"
// (StatsData) has the real outcome and processing time.
//
// # Request pipeline
//
// Every request to every endpoint goes through the same steps; the first
// that fails answers. Steps 1 to 3 need no store and run on micro's
// handler, before the request takes a place in the queue, so that
// oversized and unsigned floods and noisy identities are turned away
// cheaply; a request whose signer the instance does not know to be
// registered takes the stranger lane instead (see "Limits and unknown
// signers" below), and reaches step 4 only once its signer is found
// registered:
//
//  1. size: the body is at most Config.MaxRequestBytes, or
//     Config.MaxBundleBytes for the requests that carry sealed keys or
//     blob chunks (rooms create, invite, remove, rekey; blobs put), or the
//     endpoint's Config.EndpointMaxBytes → 413;
//  2. signature: subjects.VerifyRequest (headers, key, clock skew within
//     Config.MaxSkew, Ed25519 signature over the canonical request) → 401;
//  3. rate: a token bucket per registered identity (the verified signer)
//     in each instance, Config.RateLimit per second in bursts of
//     Config.RateBurst → 429 with a retry hint (subjects.HeaderRetryAfter
//     and the body's retry_after_ms). Only identities a store read found
//     registered get a bucket: no other request is charged to one;
//  4. a worker: the request joins the service's queue (Config.QueueLength,
//     and at most 64 MiB of bodies; full → 503 at once) for its bounded
//     pool (Config.Workers). Config.RequestTimeout runs from the request's
//     arrival: a request still queued then is refused (503), and the rest
//     of the pipeline runs within what is left of it;
//  5. nonce: claimed once in the store, shared by every instance, so that a
//     replay to any instance fails → 401, or 503 if the store fails (fail
//     closed);
//  6. signer: registered and not revoked (one read of the user record, which
//     also gives the handlers the admin flag) → 401, or 503. The claim and
//     the read run concurrently (one store round trip instead of two); their
//     verdicts are judged in this order;
//  7. body: UTF-8, strict JSON (unknown fields, trailing data, wrong types,
//     nesting beyond encoding/json's 10,000 levels) → 400;
//  8. the operation, which validates every field and the limits
//     (Config.MaxMembersPerRoom, Config.MaxRoomsPerUser → 409) before its
//     first write, so that a refused request changes nothing stored.
//
// Config.AuthMode relaxes steps 2, 5 and 6: AuthSoft logs each failure and
// lets the request proceed as the identity the Unibus-Pub header claims
// (report-only, to migrate clients); AuthOff skips them (development
// only). In both, the rate limit applies to the claimed identity. No
// endpoint accepts an anonymous request: without a usable Unibus-Pub
// header a request is 401 in every mode. Authorization (admin, owner,
// member) and the owner and encryption-key signatures in request bodies
// are checked in every mode. Only micro's own discovery ($SRV.>) is
// outside the pipeline.
//
// # Limits and unknown signers
//
// Requests that no registered signer vouches for never share anything
// with registered users but the CPU that answers them: not a bucket, not
// a worker, not a store round trip. Each instance knows which signers a
// store read found registered lately (those with a bucket, kept while
// they are active and for ten minutes after) and which it found
// unregistered or revoked (for half a second to a second, by a seeded
// hash, at most 32,768 keys per half second). In AuthEnforce, before
// step 2:
//
//   - a signer found unregistered or revoked is refused (401, "… is not
//     a registered user" or "… is revoked") without a signature check or a
//     store read;
//   - a signer nothing is known of (a key made up by an attacker, or a
//     registered user new to this instance) goes to the stranger lane: a
//     bounded queue (4,096 requests, 16 MiB of bodies and headers; full →
//     429 "too many requests from identities this service does not
//     know") that one goroutine resolves in batches of up to 256 keys,
//     one multi-key read of the users bucket each, so that at most one
//     such read is in flight whatever the rate of requests. A signer found registered gets its
//     bucket and its request goes on at step 2; any other is refused (401)
//     without a signature check, no nonce claimed, nothing written;
//   - a signer found registered goes on at step 2.
//
// The refusals of requests whose signer is not verified (unsigned,
// malformed, forged, oversized, unregistered, revoked, and the lane's
// 429) are answered at a pace of their own: ten times Config.RateLimit
// a second, in bursts of ten times Config.RateBurst, apart from every
// registered identity's bucket. A refusal past that pace waits for its
// turn (at most 4,096 of them, each without its request's body or
// headers), and is answered at its request's deadline at the latest;
// beyond, it is answered at once with 429. A client that waits for its
// answers therefore floods no faster than the pace, while registered
// users keep their own buckets, the workers and the store. A user an
// administrator adds through an instance is served by it as registered
// at once; a user added through another instance is served by this one
// less than a second after this one last read that it was not. In
// AuthSoft and AuthOff, identities without a bucket share one bucket for
// newcomers (ten identities' rate and burst) instead. A negative
// Config.RateLimit turns rate limiting off, the pace of refusals
// included; what an instance knows of signers still applies.
//
// # Errors
//
// Failures are micro errors: the Nats-Service-Error-Code and
// Nats-Service-Error headers, and a subjects.ErrorBody with the same code
// and message. Codes: 400 malformed, 401 unauthenticated, 403 forbidden,
// 404 not found, 409 conflict (also a room or user at its limit), 413 too
// large, 429 too many requests, 503 unavailable. Messages are written for
// humans ("you have no key for room R at epoch E", "only the room owner
// may invite") and never carry store or Go error text; the cause is logged
// (503 at error level, 401 at warning, the rest at debug). Inside the
// package every failure is an *Error, which matches its code's sentinel
// (subjects.ErrForbidden, …) with errors.Is.
//
// # Operations
//
// users (administrators only, except get, setkey and events):
//   - add: register a user, optionally an administrator; a duplicate is 409.
//   - get: any registered user reads any user (to seal room keys to its
//     encryption key, after checking the binding).
//   - list: every user, revoked ones included, sorted by key.
//   - revoke: administrators may revoke anyone, themselves included, except
//     the last unrevoked administrator (409). Revoking twice is harmless.
//   - setkey: the caller publishes its own encryption key with a binding
//     signature by its identity (subjects.VerifyEncKeyBinding; 400 if it
//     does not verify), numbered and dated: the version must be above the
//     registered one (409 otherwise; the registered binding sent again is a
//     no-op) and the time not beyond the clock-skew allowance (400).
//   - events: any registered user reads a page of its own events
//     (subjects.EventsRequest: from a sequence, at most limit, 400 out of
//     bounds), and no one else's. See "Events" below.
//
// rooms:
//   - create: the caller owns the new room. Its room_id must be
//     subjects.RoomIDFor(caller, mode, salt), made with subjects.NewRoomID, and
//     the request carries that salt (400 otherwise: an ID names its owner,
//     so no one can take an ID that reads like a name or passes for
//     another's room); the salt is stored and returned in RoomInfo and
//     RoomRef, so that any member checks subjects.CheckRoomOwner. An e2e
//     room (the default) needs room_id and salt (the sealed key binds the
//     ID), the epoch-1 room key sealed to the caller, who must have
//     published an encryption key, and the caller's key grant of it (grant,
//     subjects.GrantLen bytes; 400 without it or of another length); a
//     room ID in use is 409. A cleartext room has neither sealed key nor
//     grant (400), may leave room_id and salt both to the service, and is
//     403 when Config.RequireEncryptedRooms is set. history is "keep" (the
//     default: the room log keeps the room's frames) or "none" (nothing is
//     stored), 400 otherwise; with "keep", history_max_age may keep the
//     frames for less than the deployment does, a Go duration from a
//     minute to kvstore.Store.HistoryMaxAge (400 otherwise, and with
//     "none"). RoomInfo and RoomRef report the policy, RoomInfo the room's
//     own maximum age.
//   - history: members only (403 for anyone else, a removed member
//     included; 404 for no such room). A page of the room log
//     (subjects.HistoryRequest: forward from from or since, up to until;
//     or the last last frames, before before), as the frames were sent,
//     with their sequences: only the frames stored since the caller was
//     invited (the owner: since the room was created), whatever it asks
//     for. A request that selects no valid page (limit out of bounds, last
//     with from, before without last, until below from) is 400. A room
//     that keeps no history has an empty log. The routing service (package
//     router), not this one, appends to the log.
//   - get, members, key: members only (403). members lists the current
//     members (revoked users left out), each with its encryption key and,
//     in an e2e room, the owner's grant of the current epoch, then the
//     pending invitees (role "invited") the same way, so that the owner's
//     rekey seals to them; with pub it lists that one user if it is a
//     current member and nothing otherwise (not 404: a member asks whether
//     a sender is a member; an invitee is not one), from point reads of
//     its records instead of the whole list. key returns the caller's
//     sealed key and the owner's grant of it for the current epoch (epoch
//     0) or a given one; none is 403 "you have no key for room R at epoch
//     E". The service cannot check grants (it never knows a room key) and
//     only requires, stores and returns them: members check them, so that
//     whoever controls the servers or buckets can deny service but cannot
//     add a reader or choose a room key.
//   - invite, remove, rekey: the owner only (403), with the owner's
//     signature over the request body (subjects.SignOwner; 401 if missing
//     or wrong), grants included. An invitation is a proposal: it stores
//     the invitation (kvstore.Invitation, which expires after
//     kvstore.InvitationTTL) and, in an e2e room, the invitee's sealed key
//     for the current epoch (another epoch is 409) and its grant (400
//     without it; both refused in a cleartext room); the invitee must be
//     registered, unrevoked and have an encryption key. It grants the
//     invitee nothing and counts against none of its quotas, but against
//     the room's member limit (members and pending invitations together,
//     409). A member or a pending invitation is 409. A
//     rekey names from_epoch (the room's epoch) and to_epoch (its
//     next_epoch, which the sealed keys bind), and grants for exactly the
//     members of keys, each subjects.GrantLen bytes (400 naming the missing
//     or extra one, before anything is written); it commits with
//     compare-and-set, and a stale epoch, a lost race or keys that do not
//     cover the current members and pending invitees exactly are 409 —
//     checked before anything is written where possible. Revoked users are
//     not current members: a rekey leaves them out (one that includes them
//     is 409), so a revocation sticks. Removing a member of an e2e room
//     needs the rekey bundle for the remaining members and invitees (400
//     without it): the member is removed first, then the room rekeyed.
//     Removing a pending invitee cancels the invitation, with the same
//     rekey in an e2e room (it holds a sealed key of the current epoch).
//     The owner cannot remove itself (400).
//   - accept, decline: the invitee answers its own pending invitation
//     (404 without one, or when it expired). accept checks the caller's
//     room limit (Config.MaxRoomsPerUser, 409) now, since joining is the
//     caller's choice, and makes it a member with the keys from the
//     invitation's epoch on and the room log from the invitation on. No
//     permission changes and no one is disconnected: a peer's permissions
//     name its own key only, and the router follows membership. An invitation whose room moved to an epoch without a
//     key for the invitee (a rekey won a race) is removed and 409. A
//     member accepting again gets the room (a retry). It replies RoomInfo.
//     decline removes the invitation and replies with it
//     (subjects.Invitation); it needs no rekey.
//   - leave: a member leaves; the owner cannot (400). Leaving an e2e room
//     does not rekey it: the owner should rekey, or the one who left can
//     read new frames with the key it holds.
//   - mine: the caller's rooms (ID, subject, epoch, history policy, role,
//     mode, name, owner and salt) and its pending invitations (room ID,
//     name, mode, owner, salt, epoch, when made and when they expire),
//     {"rooms":[],"invitations":[]} when none.
//
// # Events
//
// After a change is committed, the operation appends an event
// (subjects.Event) to the events of each user it concerns, at
// subjects.Events(user), which the user may subscribe to as a doorbell
// and reads with users.events: invite → "invited" to the invitee; remove
// → "removed" to the removed member (or invitee); a rekey, alone or in a
// remove → "rekeyed", with the new epoch, to every remaining member and
// pending invitee; revoke → "revoked" to the user. Events are notices, not
// proof: a client acts on one by asking the control plane. A failed
// append is logged and fails nothing; the appends of one request run at
// most 16 at a time, within its deadline.
//
// blobs (members of the blob's room only, 403 otherwise):
//   - put: one chunk of a blob (subjects.BlobPutRequest), checked against
//     Config.MaxBlobBytes and the chunk layout before anything is read
//     (413, 400). A blob already complete stores nothing and answers
//     complete. The first chunk of a blob claims it for its uploader: its
//     whole size is reserved against the uploader's quota
//     (Config.MaxBlobBytesPerUser, all rooms together) and the room's
//     (Config.MaxBlobBytesPerRoom), uploads in progress included, and
//     against the room left in the object store; beyond any of them it is
//     413, with the quota, the usage and the blob's size in the message,
//     and nothing is stored. The reservation is a record written before
//     the usage is counted, so two uploads started at once on two
//     instances never pass a quota together. Until the blob is complete
//     only its uploader puts its chunks (a co-member's put is 409), and a
//     chunk is create-only: its digest is recorded before it is stored,
//     the same bytes again store nothing, other bytes are 409. The last
//     chunk completes the blob: every chunk read back against its digest,
//     the whole hashed to the blob's ID (400 on a mismatch, and the upload
//     is removed; 409 naming a missing chunk), committed by
//     compare-and-set, then made readable by its manifest. A full object
//     store, seen coming or refusing a chunk, is 413.
//   - get: one chunk of a complete blob; an incomplete one is 404.
//
// An upload that is not complete within Config.BlobUploadTimeout of its
// first chunk takes no chunk in its last Config.RequestTimeout (409), and
// is then removed by a janitor that every instance of the services runs:
// marked expired by compare-and-set (so it can no longer complete), its
// chunks deleted, then its records, which frees its place in the quotas.
// Several janitors may meet on one upload; every step after the
// compare-and-set may be repeated.
package svc
