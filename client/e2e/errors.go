package e2e

import (
	"errors"
	"strconv"
)

// Errors of keys and configuration.
var (
	// ErrConfigValidation wraps every error of SealerConfig and
	// ReceiverConfig validation.
	ErrConfigValidation = errors.New("invalid e2e configuration")

	// ErrInvalidEncryptionKey reports an encryption key, public or private,
	// that does not parse as an MLKEM768-X25519 key. Errors that match it
	// never repeat private key material.
	ErrInvalidEncryptionKey = errors.New("invalid encryption key")

	// ErrInvalidRoomKey reports a room key that is not RoomKeySize bytes,
	// or a room key for epoch 0, which is never keyed.
	ErrInvalidRoomKey = errors.New("invalid room key")

	// ErrDecrypt reports a ciphertext that does not authenticate: a sealed
	// room key or a frame payload opened with the wrong key or in the wrong
	// context (room, epoch, recipient, sender, header), or tampered with.
	ErrDecrypt = errors.New("decryption failed")

	// ErrWiped reports use of an EncryptionKey after Wipe.
	ErrWiped = errors.New("encryption key wiped")

	// ErrInsecurePermissions reports a key file whose mode grants any access
	// to group or others. Fix it with `chmod 600 FILE`.
	ErrInsecurePermissions = errors.New("insecure key file permissions")

	// ErrExists reports that SaveEncryptionKey refused to overwrite an
	// existing file. Errors that match it also match [io/fs.ErrExist].
	ErrExists = errors.New("key file already exists")
)

// Errors of frames. A receiver drops a frame that fails with any of them;
// they are distinct so that logs and metrics can tell them apart.
var (
	// ErrMalformedFrame reports bytes that are not a well-formed frame of a
	// known version: bad JSON, unknown or missing keys, a field out of its
	// domain (room ID, user key, type, sizes, message ID references).
	ErrMalformedFrame = errors.New("malformed frame")

	// ErrUnsupportedVersion reports a frame of a version this package does
	// not know (a newer peer).
	ErrUnsupportedVersion = errors.New("unsupported frame version")

	// ErrFrameTooLarge reports a frame longer than MaxFrameSize, or a
	// payload longer than MaxPayloadSize.
	ErrFrameTooLarge = errors.New("frame too large")

	// ErrBadSignature reports a frame whose signature does not verify
	// against its sender's key, or, from SealRoomKeys, an encryption key
	// whose binding to its identity does not verify.
	ErrBadSignature = errors.New("bad signature")

	// ErrModeMismatch reports a cleartext frame where a sealed one belongs,
	// or the reverse.
	ErrModeMismatch = errors.New("frame mode does not match room mode")

	// ErrWrongRoom reports a frame for another room than the one it
	// arrived on.
	ErrWrongRoom = errors.New("frame for another room")

	// ErrNotMember reports a frame whose sender is not a current member of
	// the room, unknown senders included.
	ErrNotMember = errors.New("sender is not a member")

	// ErrStaleEpoch reports a frame of an epoch older than the previous one,
	// or of the previous epoch after the grace period.
	ErrStaleEpoch = errors.New("stale epoch")

	// ErrFutureEpoch reports a frame of an epoch newer than the receiver's
	// current one: the room was rekeyed and the receiver has not caught up.
	// Refresh the room's state and retry; the frame's sequence number is not
	// consumed.
	ErrFutureEpoch = errors.New("future epoch")

	// ErrReplay reports a frame whose sequence number was already accepted,
	// or is too far behind the replay window to tell.
	ErrReplay = errors.New("replayed frame")

	// ErrFrameAge reports a frame whose timestamp is older than the
	// receiver's maximum frame age, or further in the future than its
	// clock-skew allowance: the replay window does not survive a restart,
	// so an old frame is refused whatever its sequence number.
	ErrFrameAge = errors.New("frame timestamp outside the accepted window")

	// ErrBadGrant reports a key grant that does not verify: missing, of
	// the wrong size, or not the room owner's signature over this room,
	// epoch, member and room key (see VerifyGrant). A Receiver's error for
	// a sealed frame whose sender holds no valid grant matches both
	// ErrBadGrant and [ErrNotMember].
	ErrBadGrant = errors.New("bad key grant")
)

// maxQuotedLen bounds how much of a rejected value an error repeats.
const maxQuotedLen = 64

// quote quotes s for an error message, truncating long values.
func quote(s string) string {
	if len(s) <= maxQuotedLen {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuotedLen]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// boundedError wraps an error whose message may repeat much of untrusted
// input (encoding/json's, naming an unknown key), truncating the message.
type boundedError struct{ err error }

func (e boundedError) Error() string {
	msg := e.err.Error()
	if len(msg) <= 2*maxQuotedLen {
		return msg
	}
	return msg[:2*maxQuotedLen] + "... (truncated)"
}

func (e boundedError) Unwrap() error { return e.err }
