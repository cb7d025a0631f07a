// Package kvstore keeps unibus state in replicated JetStream KV buckets:
// users, rooms, members, the rooms-by-member index, sealed room keys and
// anti-replay nonces. Every node and every service instance shares it.
//
// # Buckets
//
//	UNIBUS_users            <pub>                  User
//	UNIBUS_rooms            <roomID>               Room (the authority on a room)
//	UNIBUS_members          <roomID>.<pub>         Member
//	UNIBUS_rooms_by_member  <pub>.<roomID>         reverse index for ListRoomsForEndpoint
//	UNIBUS_room_keys        <roomID>.<epoch>.<pub> room key sealed to that member
//	UNIBUS_nonces           hex(sha256(nonce))     empty, per-key TTL
//
// # Guarantees
//
// Every call is bounded by Config.OpTimeout (or the caller's earlier
// deadline). GetUserFromLeader and ClaimNonce, which admission relies
// on, fail closed: any backend error is returned, never a stale answer.
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
//   - RemoveMember: index → member record → room touched. Access goes in the
//     reverse order of granting, so a crash leaves less access, never more;
//     the retry deletes what is left and touches the room again.
//   - Rekey: claim a fresh epoch number on the room record (compare-and-set,
//     epoch unchanged) → write the sealed keys under the claimed epoch →
//     check they cover exactly the current members → commit the epoch by
//     compare-and-set on the claim's revision. Claimed numbers are never
//     reused, so a crashed or losing rekey's keys can never be mixed with the
//     winner's; until the commit, readers keep using the previous epoch. Two
//     concurrent rekeys from the same epoch: exactly one commits, the other
//     gets ErrConflict. Epoch numbers may therefore skip values.
package kvstore
