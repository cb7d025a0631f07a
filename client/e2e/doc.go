// Package e2e is the end-to-end cryptography of unibus rooms: encryption key
// pairs, room keys sealed to members, and signed (and, in encrypted rooms,
// sealed) frames with replay protection. It is pure: no NATS, no I/O besides
// the key file helpers. The client package wires it to the bus.
//
// # Encryption keys and room keys
//
// Every user has an [EncryptionKey], an HPKE (RFC 9180) key pair for the
// hybrid post-quantum KEM MLKEM768-X25519 (X-Wing). Its public key
// ([EncryptionKey.PublicKey], 1216 bytes) is published in the user record,
// bound to the identity by subjects.SignEncKeyBinding. The private key is
// a 32-byte seed, stored beside the identity by [SaveEncryptionKey] as one
// line of text:
//
//	unibus-enc-secret-v1:<seed as unpadded base64url>
//
// A room key is 32 random bytes per room and epoch ([NewRoomKey]). The room
// owner seals it to each member with single-shot HPKE ([SealRoomKey],
// [SealRoomKeys]; KEM MLKEM768-X25519, KDF HKDF-SHA256, AEAD
// ChaCha20-Poly1305, base mode, empty AAD). The HPKE info binds the context,
// so a sealed key moved to another room, epoch or recipient does not open:
//
//	info = "unibus-roomkey-v1" ‖ lp(room) ‖ u64(epoch) ‖ lp(recipient)
//
// where lp(s) is one length byte followed by s, u64 is 8 bytes big-endian,
// and recipient is the member's user public key (U…). A sealed room key is
// HPKE's enc ‖ ciphertext, [SealedRoomKeySize] bytes. Epoch 0 (cleartext
// rooms) has no key.
//
// # Key grants
//
// HPKE does not say who sealed a key: whoever controls the servers or the
// buckets could seal a key of its own choosing to every member, or store a
// ghost member beside the real ones. So the owner also signs, for each
// member and epoch, a key grant ([SignGrant], [VerifyGrant]), an Ed25519
// signature by the owner's identity over
//
//	"unibus-key-grant-v1\n" ‖ lp(room) ‖ lp(member) ‖ u64(epoch) ‖ commitment
//	commitment = SHA-256("unibus-key-commitment-v1\n" ‖ roomKey)   ([KeyCommitment])
//
// The commitment names the key without revealing it, so grants travel in
// the clear: the service stores them beside the sealed keys and hands them
// out, and cannot make one. The room's owner is authentic because the room
// ID names it (subjects.CheckRoomOwner). A member checks its own grant
// before it uses a room key (a key the owner did not grant to it is
// refused); the owner checks every member's grant before it seals a rekey
// (a member without one is a ghost); and every sealed frame carries its
// sender's grant (below), which receivers check. The domain tag ends in a
// newline, so identity.Sign accepts the message and no login nonce has its
// form, and no other application message starts with it.
//
// # Frames
//
// A [Frame] is one message in a room, JSON with short keys on the wire
// (see [Frame] for each key). Optional keys (clear, thr, re, n, g) are
// omitted when empty, so a frame that does not use them encodes exactly as
// it did before they existed; []byte values are standard padded base64.
//
//	{"v":1,"t":"MSG","room":"r1","ep":3,"from":"UD…","seq":1767225600000000,
//	 "ts":1767225600000,"thr":"…","re":"…","n":"…","ct":"…","sig":"…","g":"…"}
//
// g is, in a sealed frame, the owner's key grant to the sender for the
// frame's room and epoch ([GrantSize] bytes); a cleartext frame has none.
// The frame's signature does not cover g and need not: g is itself the
// owner's signature, bound to the sender, room, epoch and room key, so
// changing or moving it only makes receivers refuse the frame, and it
// changes neither the signed bytes nor the message ID. Decode accepts a
// sealed frame without g (one made before grants existed); a [Receiver]
// does not.
//
// The canonical header of a frame is a binary encoding of every field except
// the nonce, the ciphertext and the signature (integers big-endian, lp as
// above):
//
//	u8(v) ‖ u8(flags) ‖ lp(t) ‖ lp(room) ‖ u64(ep) ‖ lp(from) ‖ u64(seq) ‖ u64(ts)
//	      ‖ [0x01 ‖ lp(thr)]   only if thr is set
//	      ‖ [0x02 ‖ lp(re)]    only if re is set
//
// flags is 0x01 for a cleartext frame and 0x00 for a sealed one; ts is the
// two's complement of the signed millisecond timestamp. Optional fields are
// tagged and appear, in increasing tag order, only when set, which keeps the
// header of an unthreaded frame unchanged by their existence.
//
// In an encrypted room, each sender has a subkey per room and epoch,
//
//	subkey = HKDF-SHA256(ikm = roomKey, salt = nil,
//	                     info = "unibus-frame-v1" ‖ lp(room) ‖ u64(ep) ‖ lp(from), 32 bytes)
//
// and the payload is sealed with XChaCha20-Poly1305 under the subkey, a
// 24-byte random nonce and the canonical header as additional data.
//
// Every frame, sealed or not, is then signed by the sender's identity
// (Ed25519, the nkey behind the U… key in "from"), encrypt-then-sign:
//
//	signed = "unibus-frame-sig-v1\n" ‖ u16(len(header)) ‖ header ‖ u8(len(n)) ‖ n ‖ ct
//
// Receivers check the signature before they touch a key, so a forgery, or a
// frame one member crafts under another member's name with the shared room
// key, is dropped before any decryption. The message ID of a frame
// ([Frame.ID]) is the unpadded base64url SHA-256 of signed (43 characters):
// it is stable for a frame however its JSON is laid out, and the thr and re
// fields of other frames refer to it.
//
// A cleartext frame (in a cleartext room) has flags 0x01 ("clear":true on
// the wire), epoch 0, no nonce, and its payload in ct as is; it is signed the
// same way. The flag is in the signed header, so a cleartext frame never
// passes as a sealed one, nor the reverse: [Receiver] also checks it against
// the room's mode.
//
// # Sequence numbers and replay
//
// seq is per sender, room and epoch. A [Sealer] makes it strictly increasing
// and at least the current time in microseconds since the Unix epoch, so a
// sender that restarts, or a second process of the same identity that
// starts later, continues above what receivers have seen without storing
// any state. A [ReplayWindow] remembers, per room, epoch and sender, the
// highest seq seen and a 1024-wide bitmap below it (as IPsec and WireGuard
// do): a duplicate, or a seq more than 1023 below the highest, is a replay.
//
// # Receiving
//
// A [Receiver] applies, in this order: the frame names the subscribed room;
// its mode matches the room's; the signature verifies; its epoch is the
// current one, or the previous one within a grace period after a rekey (a
// newer epoch is reported only for a frame whose signature verified, so a
// forgery never makes a subscriber ask the control plane anything); its
// timestamp is fresh (below); it is not a replay; its sender may send;
// it decrypts. In an encrypted room the sender may send if the frame's
// grant verifies under the room's owner and the room key of the frame's
// epoch: no request, no member list. A verified grant is cached per room,
// epoch and sender (bounded, [ReceiverConfig].MaxGrants), so a sender's
// later frames cost one SHA-256 of the key and a 64-byte comparison; a
// removed member gets no grant for the epoch its removal starts, so its
// frames are refused once receivers move to that epoch and the grace
// period of the previous one ends. In a cleartext room there is no key to
// grant and the [KeyRing] says whether the sender is a member. Keys,
// epochs, owners and members come from the caller through a [KeyRing],
// which must hand out only keys it authenticated with its own grant.
//
// # Replays across restarts
//
// The replay window lives in memory, so a receiver that restarts has
// forgotten which frames it accepted. Rather than persist per-sender
// high-water marks beside the identity, a Receiver refuses frames whose
// timestamp is older than a maximum age ([DefaultMaxFrameAge]: the grace
// period plus the clock-skew allowance) or further ahead than the
// clock-skew allowance ([DefaultMaxClockSkew]), with [ErrFrameAge]. The
// residual risk: a frame captured within the maximum age can be accepted a
// second time by a receiver that restarted (or evicted that sender's
// window) since it first accepted it, until the frame is that old; a
// sender whose clock is more than the allowance off is refused. Persisted
// high-water marks would close that window but cost a durable write per
// sender and room (or lose the guarantee on a crash between accepting and
// writing), break on a restored backup or a second process of the same
// identity, and be refused by platforms (mobile) whose storage is not
// ours to write at message rate; the time check needs no state at all.
// The check is one place ([Receiver.Accept], configured by
// ReceiverConfig.MaxFrameAge), which a reader of durable history turns off
// on purpose with [NoMaxFrameAge] and replaces by the stream's sequence
// numbers.
//
// # Stored history
//
// A reader of a room's stored frames reads them long after they were
// sealed, and across rekeys. Besides [NoMaxFrameAge] it sets
// ReceiverConfig.EarlierEpochs, which accepts a frame of any epoch up to
// the current one whose room key the [KeyRing] supplies, without the grace
// period. Everything else is checked as ever: the signature, the sender's
// key grant of the frame's epoch, the decryption, and replays, against the
// reader's own [ReplayWindow] (one per reader, so that a frame read again
// by another reader is not a replay). What it gives up: a member removed
// at some epoch still holds the keys and grants of the epochs before, and
// could seal new frames under them, dated as it likes, that whoever
// controls the log could store among the old ones; they carry that
// member's name and no one else's.
package e2e
