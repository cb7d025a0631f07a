// Package svc runs the unibus control plane: the NATS micro services
// unibus-users and unibus-rooms, on the subjects of package subjects, over
// the state of package kvstore.
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
// cheaply:
//
//  1. size: the body is at most Config.MaxRequestBytes, or
//     Config.MaxBundleBytes for the requests that carry sealed keys or
//     blob chunks (rooms create, invite, remove, rekey; blobs put), or the
//     endpoint's Config.EndpointMaxBytes → 413;
//  2. signature: subjects.VerifyRequest (headers, key, clock skew within
//     Config.MaxSkew, Ed25519 signature over the canonical request) → 401;
//  3. rate: a token bucket per identity (the verified signer) in each
//     instance, Config.RateLimit per second in bursts of Config.RateBurst
//     → 429 with a retry hint (subjects.HeaderRetryAfter and the body's
//     retry_after_ms). Only registered identities get a bucket of their
//     own; callers without one share a bucket for newcomers, so made-up
//     keys cost neither memory nor more than that bucket's store reads;
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
// users (administrators only, except get and setkey):
//   - add: register a user, optionally an administrator; a duplicate is 409.
//   - get: any registered user reads any user (to seal room keys to its
//     encryption key, after checking the binding).
//   - list: every user, revoked ones included, sorted by key.
//   - revoke: administrators may revoke anyone, themselves included, except
//     the last unrevoked administrator (409). Revoking twice is harmless.
//   - setkey: the caller publishes its own encryption key with a binding
//     signature by its identity (subjects.VerifyEncKeyBinding; 400 if it
//     does not verify).
//
// rooms:
//   - create: the caller owns the new room. An e2e room (the default)
//     needs its room_id, chosen by the client (the sealed key binds it), and
//     the epoch-1 room key sealed to the caller, who must have published an
//     encryption key; a room ID in use is 409. A cleartext room may leave
//     room_id to the service, and is 403 when
//     Config.RequireEncryptedRooms is set.
//   - get, members, key: members only (403). key returns the caller's sealed
//     key for the current epoch (epoch 0) or a given one; none is 403 "you
//     have no key for room R at epoch E".
//   - invite, remove, rekey: the owner only (403), with the owner's
//     signature over the request body (subjects.SignOwner; 401 if missing
//     or wrong). An invitation in an e2e room carries the invitee's sealed
//     key for the current epoch (another epoch is 409); the invitee must be
//     registered, unrevoked and have an encryption key. A rekey names
//     from_epoch (the room's epoch) and to_epoch (its next_epoch, which the
//     sealed keys bind); it commits with compare-and-set, and a stale epoch,
//     a lost race or keys that do not cover the members exactly are 409 —
//     checked before anything is written where possible. Removing a member
//     of an e2e room needs the rekey bundle for the remaining members (400
//     without it): the member is removed first, then the room rekeyed. The
//     owner cannot remove itself (400).
//   - leave: a member leaves; the owner cannot (400). Leaving an e2e room
//     does not rekey it: the owner should rekey, or the one who left can
//     read new frames with the key it holds.
//   - mine: the caller's rooms (ID, subject, epoch, history policy, role,
//     mode), {"rooms":[]} when none.
package svc
