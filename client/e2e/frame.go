package e2e

import (
	"bytes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/unibus/unibus/subjects"
)

// Version is the frame format version this package writes and reads.
const Version = 1

// Frame types (Frame.T). Other types made of A-Z, 0-9 and '_' are carried
// as is, for the application to interpret.
const (
	// TypeMsg is a message.
	TypeMsg = "MSG"
	// TypeReact is a reaction to the message whose ID is in Frame.Re,
	// which a REACT frame must set.
	TypeReact = "REACT"
)

// Size limits.
const (
	// MaxFrameSize bounds the wire form of a frame: the default max_payload
	// of a NATS server.
	MaxFrameSize = 1 << 20

	// MaxPayloadSize bounds the payload of a frame, so that its wire form,
	// base64 and header included, stays below MaxFrameSize.
	MaxPayloadSize = 512 << 10

	// MaxTypeLen bounds the length of a frame type.
	MaxTypeLen = 16

	// NonceSize is the size of the nonce of a sealed frame
	// (XChaCha20-Poly1305).
	NonceSize = chacha20poly1305.NonceSizeX

	// MessageIDLen is the length of a message ID: 32 bytes as unpadded
	// base64url.
	MessageIDLen = 43
)

const (
	// flagClear marks a cleartext frame in the canonical header.
	flagClear = 0x01

	// Tags of the optional fields of the canonical header.
	tagThr = 0x01
	tagRe  = 0x02

	// subkeyDomain starts the HKDF info of a sender's subkey.
	subkeyDomain = "unibus-frame-v1"

	// sigDomain starts the bytes a frame's signature covers.
	sigDomain = "unibus-frame-sig-v1\n"

	// userKeyLen is the length of an nkey user public key (U…).
	userKeyLen = 56
)

// Frame is one message in a room, as it travels on the bus: JSON with the
// keys given below, optional ones omitted when empty. See the package
// documentation for the canonical header, the sealing and the signature.
//
// Frames come from [Sealer.Seal] and [Decode]. A decoded frame is well formed
// but not yet authentic: call [Frame.Verify], or better a [Receiver].
type Frame struct {
	// V ("v") is the format version, [Version].
	V int `json:"v"`
	// T ("t") is the type: [TypeMsg], [TypeReact], or another
	// application-defined type of 1 to MaxTypeLen characters from A-Z, 0-9
	// and '_', starting with a letter.
	T string `json:"t"`
	// Room ("room") is the room ID.
	Room string `json:"room"`
	// Epoch ("ep") is the key epoch the payload is sealed under: at least 1
	// in a sealed frame, 0 in a cleartext frame.
	Epoch uint64 `json:"ep"`
	// Clear ("clear", omitted when false) marks a cleartext frame: signed
	// but not sealed, its payload in CT as is.
	Clear bool `json:"clear,omitempty"`
	// Sender ("from") is the sender's user public key (U…), which signs the
	// frame.
	Sender string `json:"from"`
	// Seq ("seq") is the sender's sequence number in this room and epoch,
	// at least 1, for replay protection.
	Seq uint64 `json:"seq"`
	// TS ("ts") is the sender's clock when sealing, in milliseconds since
	// the Unix epoch. A Receiver refuses a frame older than its maximum
	// frame age or too far in its future (see ReceiverConfig.MaxFrameAge).
	TS int64 `json:"ts"`
	// Thr ("thr", omitted when empty) is the ID of the thread's root
	// message.
	Thr string `json:"thr,omitempty"`
	// Re ("re", omitted when empty) is the ID of the message this frame
	// replies or reacts to.
	Re string `json:"re,omitempty"`
	// Nonce ("n", omitted when empty) is the XChaCha20-Poly1305 nonce,
	// NonceSize bytes in a sealed frame, empty in a cleartext one.
	Nonce []byte `json:"n,omitempty"`
	// CT ("ct") is the sealed payload, or the payload in a cleartext frame.
	CT []byte `json:"ct"`
	// Sig ("sig") is the sender's Ed25519 signature (64 bytes).
	Sig []byte `json:"sig"`
	// Grant ("g", omitted when empty) is, in a sealed frame, the room
	// owner's key grant to the sender for this room and epoch (GrantSize
	// bytes; see [SignGrant]); a cleartext frame has none. The signature
	// does not cover it and need not: it is the owner's own signature,
	// bound to the sender, room, epoch and room key, so whoever changes it
	// only makes the frame fail a Receiver's grant check. Decode accepts a
	// sealed frame without one (frames made before grants existed), which
	// a Receiver then refuses.
	Grant []byte `json:"g,omitempty"`
}

// Decode parses the wire form of a frame and checks that it is well formed.
// It is strict: the input must be at most [MaxFrameSize] bytes holding one
// JSON object with only the keys of [Frame], each in its domain. The error
// matches [ErrFrameTooLarge], [ErrUnsupportedVersion] or
// [ErrMalformedFrame]. Decode does not verify the signature.
func Decode(wire []byte) (Frame, error) {
	if len(wire) > MaxFrameSize {
		return Frame{}, fmt.Errorf("decode frame: %d bytes, limit %d: %w", len(wire), MaxFrameSize, ErrFrameTooLarge)
	}
	var f Frame
	dec := json.NewDecoder(bytes.NewReader(wire))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return Frame{}, fmt.Errorf("decode frame: %w: %w", ErrMalformedFrame, boundedError{err})
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Frame{}, fmt.Errorf("decode frame: %w: data after the frame", ErrMalformedFrame)
	}
	if err := f.validate(); err != nil {
		return Frame{}, fmt.Errorf("decode frame: %w", err)
	}
	return f, nil
}

// Encode returns the wire form of f after checking that it is well formed.
func (f Frame) Encode() ([]byte, error) {
	if err := f.validate(); err != nil {
		return nil, fmt.Errorf("encode frame: %w", err)
	}
	return f.marshal()
}

// marshal returns the JSON of f, which must be valid.
func (f *Frame) marshal() ([]byte, error) {
	if f.CT == nil {
		f.CT = []byte{} // "ct":"" rather than null
	}
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode frame: %w", err)
	}
	return b, nil
}

// malformed returns an error matching ErrMalformedFrame.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedFrame, fmt.Sprintf(format, args...))
}

// validate checks that every field of f is in its domain.
func (f *Frame) validate() error {
	switch {
	case f.V == 0:
		return malformed("missing version")
	case f.V < 0:
		return malformed("version %d", f.V)
	case f.V != Version:
		return fmt.Errorf("%w %d (this peer reads version %d)", ErrUnsupportedVersion, f.V, Version)
	}
	if err := f.validateHeader(); err != nil {
		return err
	}
	if f.Seq == 0 {
		return malformed("sequence number 0")
	}
	if f.Clear {
		if len(f.Nonce) != 0 {
			return malformed("cleartext frame with a nonce")
		}
		if len(f.Grant) != 0 {
			return malformed("cleartext frame with a key grant")
		}
	} else {
		if len(f.Nonce) != NonceSize {
			return malformed("nonce is %d bytes, want %d", len(f.Nonce), NonceSize)
		}
		if len(f.CT) < chacha20poly1305.Overhead {
			return malformed("ciphertext is %d bytes, want at least %d", len(f.CT), chacha20poly1305.Overhead)
		}
		if len(f.Grant) != 0 && len(f.Grant) != GrantSize {
			return malformed("key grant is %d bytes, want %d", len(f.Grant), GrantSize)
		}
	}
	if n := len(f.CT) - f.overhead(); n > MaxPayloadSize {
		return fmt.Errorf("payload of %d bytes, limit %d: %w", n, MaxPayloadSize, ErrFrameTooLarge)
	}
	if len(f.Sig) != ed25519.SignatureSize {
		return malformed("signature is %d bytes, want %d", len(f.Sig), ed25519.SignatureSize)
	}
	return nil
}

// overhead is what sealing adds to the payload.
func (f *Frame) overhead() int {
	if f.Clear {
		return 0
	}
	return chacha20poly1305.Overhead
}

// validateHeader checks the header fields other than the version and the
// sequence number, which Sealer.Seal sets after calling it.
func (f *Frame) validateHeader() error {
	if !validType(f.T) {
		return malformed("type %s: want 1 to %d characters from A-Z, 0-9 and _, starting with a letter", quote(f.T), MaxTypeLen)
	}
	if err := subjects.ValidateRoomID(f.Room); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedFrame, err)
	}
	if f.Clear != (f.Epoch == 0) {
		if f.Clear {
			return malformed("cleartext frame with epoch %d, want 0", f.Epoch)
		}
		return malformed("sealed frame with epoch 0")
	}
	if !validUserKey(f.Sender) {
		return malformed("sender %s is not a user public key (U...)", quote(f.Sender))
	}
	if f.Thr != "" && !validMessageID(f.Thr) {
		return malformed("thread %s is not a message ID", quote(f.Thr))
	}
	if f.Re != "" && !validMessageID(f.Re) {
		return malformed("reply-to %s is not a message ID", quote(f.Re))
	}
	if f.T == TypeReact && f.Re == "" {
		return malformed("%s frame without the message it reacts to", TypeReact)
	}
	return nil
}

// validType reports whether t is a frame type.
func validType(t string) bool {
	if len(t) == 0 || len(t) > MaxTypeLen || t[0] < 'A' || t[0] > 'Z' {
		return false
	}
	for i := range len(t) {
		c := t[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validUserKey reports whether s is a user public key in canonical form.
func validUserKey(s string) bool {
	if len(s) != userKeyLen || s[0] != 'U' {
		return false
	}
	for i := range len(s) {
		// The base32 alphabet; this also rules out the line breaks that
		// base32 decoding would skip.
		if c := s[i]; !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return nkeys.IsValidPublicUserKey(s)
}

// validMessageID reports whether s is a message ID: 32 bytes as unpadded
// base64url, in canonical form.
func validMessageID(s string) bool {
	if len(s) != MessageIDLen {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	var b [sha256.Size]byte
	n, err := base64.RawURLEncoding.Strict().Decode(b[:], []byte(s))
	return err == nil && n == sha256.Size
}

// headerLen returns the length of f's canonical header.
func (f *Frame) headerLen() int {
	n := 1 + 1 + 1 + len(f.T) + 1 + len(f.Room) + 8 + 1 + len(f.Sender) + 8 + 8
	if f.Thr != "" {
		n += 2 + len(f.Thr)
	}
	if f.Re != "" {
		n += 2 + len(f.Re)
	}
	return n
}

// appendHeader appends f's canonical header to b. The header fields must be
// valid (every string at most 255 bytes).
func (f *Frame) appendHeader(b []byte) []byte {
	var flags byte
	if f.Clear {
		flags |= flagClear
	}
	b = append(b, byte(f.V), flags)
	b = append(b, byte(len(f.T)))
	b = append(b, f.T...)
	b = append(b, byte(len(f.Room)))
	b = append(b, f.Room...)
	b = binary.BigEndian.AppendUint64(b, f.Epoch)
	b = append(b, byte(len(f.Sender)))
	b = append(b, f.Sender...)
	b = binary.BigEndian.AppendUint64(b, f.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(f.TS))
	if f.Thr != "" {
		b = append(b, tagThr, byte(len(f.Thr)))
		b = append(b, f.Thr...)
	}
	if f.Re != "" {
		b = append(b, tagRe, byte(len(f.Re)))
		b = append(b, f.Re...)
	}
	return b
}

// header returns f's canonical header, the additional data of its sealed
// payload. f must be well formed.
func (f *Frame) header() []byte {
	return f.appendHeader(make([]byte, 0, f.headerLen()))
}

// signedMessage returns the bytes f's signature covers. f must be well
// formed.
func (f *Frame) signedMessage() []byte {
	hl := f.headerLen()
	b := make([]byte, 0, len(sigDomain)+2+hl+1+len(f.Nonce)+len(f.CT))
	b = append(b, sigDomain...)
	b = binary.BigEndian.AppendUint16(b, uint16(hl))
	b = f.appendHeader(b)
	b = append(b, byte(len(f.Nonce)))
	b = append(b, f.Nonce...)
	return append(b, f.CT...)
}

// messageID returns the message ID of the signed message msg.
func messageID(msg []byte) string {
	sum := sha256.Sum256(msg)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// ID returns the message ID of f: the SHA-256 of the bytes its signature
// covers, as unpadded base64url ([MessageIDLen] characters). It is the same
// for every wire form of the frame. f must be well formed.
func (f Frame) ID() string { return messageID(f.signedMessage()) }

// MessageID decodes wire and returns the message ID of the frame, which it
// does not verify.
func MessageID(wire []byte) (string, error) {
	f, err := Decode(wire)
	if err != nil {
		return "", err
	}
	return f.ID(), nil
}

// Verify checks that f is well formed and signed by its sender. The error
// matches [ErrBadSignature], or one of Decode's errors for a frame that is
// not well formed.
func (f Frame) Verify() error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("verify frame: %w", err)
	}
	if err := f.verify(f.signedMessage()); err != nil {
		return fmt.Errorf("verify frame: %w", err)
	}
	return nil
}

// verify checks f's signature over msg, its signed message.
func (f *Frame) verify(msg []byte) error {
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(f.Sender))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: bad sender key", ErrMalformedFrame)
	}
	if !ed25519.Verify(ed25519.PublicKey(raw), msg, f.Sig) {
		return fmt.Errorf("%w from %s", ErrBadSignature, f.Sender)
	}
	return nil
}

// deriveAEAD returns the XChaCha20-Poly1305 AEAD of sender's subkey in room
// at epoch. roomKey must be RoomKeySize bytes.
func deriveAEAD(roomKey []byte, room string, epoch uint64, sender string) (cipher.AEAD, error) {
	info := appendContext(nil, subkeyDomain, room, epoch, sender)
	subkey, err := hkdf.Key(sha256.New, roomKey, nil, string(info), chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("derive subkey: %w", err)
	}
	defer clear(subkey) // NewX keeps its own copy
	a, err := chacha20poly1305.NewX(subkey)
	if err != nil {
		return nil, fmt.Errorf("derive subkey: %w", err)
	}
	return a, nil
}

// Open verifies f's signature and returns its payload, decrypted with
// roomKey, the key of f's room and epoch. It fails with [ErrModeMismatch] for
// a cleartext frame, [ErrBadSignature] (before any decryption) for a forgery
// and [ErrDecrypt] for a payload that does not open.
//
// Open does not check membership, epochs or replays: a subscriber should use
// a [Receiver].
func Open(f Frame, roomKey []byte) ([]byte, error) {
	if f.Clear {
		return nil, fmt.Errorf("open frame: cleartext frame: %w", ErrModeMismatch)
	}
	if err := f.Verify(); err != nil {
		return nil, fmt.Errorf("open frame: %w", err)
	}
	pt, err := f.decrypt(roomKey)
	if err != nil {
		return nil, fmt.Errorf("open frame: %w", err)
	}
	return pt, nil
}

// OpenCleartext verifies f's signature and returns its payload. It fails
// with [ErrModeMismatch] for a sealed frame and [ErrBadSignature] for a
// forgery. Like Open, it does not check membership, epochs or replays.
func OpenCleartext(f Frame) ([]byte, error) {
	if !f.Clear {
		return nil, fmt.Errorf("open frame: sealed frame: %w", ErrModeMismatch)
	}
	if err := f.Verify(); err != nil {
		return nil, fmt.Errorf("open frame: %w", err)
	}
	return bytes.Clone(f.CT), nil
}

// decrypt opens the payload of the well-formed, sealed frame f with roomKey.
// It does not verify the signature.
func (f *Frame) decrypt(roomKey []byte) ([]byte, error) {
	if len(roomKey) != RoomKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidRoomKey, len(roomKey), RoomKeySize)
	}
	a, err := deriveAEAD(roomKey, f.Room, f.Epoch, f.Sender)
	if err != nil {
		return nil, err
	}
	pt, err := a.Open(nil, f.Nonce, f.CT, f.header())
	if err != nil {
		return nil, fmt.Errorf("payload from %s in room %s epoch %d: %w", f.Sender, f.Room, f.Epoch, ErrDecrypt)
	}
	return pt, nil
}
