package subjects

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Headers of a signed control-plane request.
const (
	// HeaderPub carries the signer's user public key (U…).
	HeaderPub = "Unibus-Pub"
	// HeaderTs carries the signing time in unix milliseconds, in decimal
	// without sign or leading zeros.
	HeaderTs = "Unibus-Ts"
	// HeaderNonce carries a random, single-use nonce of MinNonceLen to
	// MaxNonceLen characters from [A-Za-z0-9_-] (base64url or hex).
	HeaderNonce = "Unibus-Nonce"
	// HeaderSig carries the Ed25519 signature over CanonicalRequest, encoded
	// as unpadded base64url.
	HeaderSig = "Unibus-Sig"
)

// Limits of the signed-request headers.
const (
	// MinNonceLen is the shortest nonce, in characters, that VerifyRequest
	// accepts. SignRequest uses 22 (16 random bytes).
	MinNonceLen = 16
	// MaxNonceLen is the longest nonce, in characters, that VerifyRequest
	// accepts.
	MaxNonceLen = 64
	// DefaultMaxSkew is the clock skew VerifyRequest allows when called
	// with a non-positive maxSkew. Replay protection must remember nonces
	// for at least twice the skew in use.
	DefaultMaxSkew = 2 * time.Minute
)

const (
	requestDomain = "unibus-req-v1\n"
	maxTSLen      = 19 // digits of the largest int64
)

// sigEncoding encodes signatures; Strict rejects non-canonical encodings.
func sigEncoding() *base64.Encoding { return base64.RawURLEncoding.Strict() }

// CanonicalRequest returns the bytes a control-plane request signature
// covers:
//
//	"unibus-req-v1\n" + subject + "\n" + ts + "\n" + nonce + "\n" + hex(sha256(body))
//
// where ts and nonce are the header values exactly as sent and the hex is
// lower case.
func CanonicalRequest(subject, ts, nonce string, body []byte) []byte {
	sum := sha256.Sum256(body)
	b := make([]byte, 0, len(requestDomain)+len(subject)+len(ts)+len(nonce)+3+hex.EncodedLen(len(sum)))
	b = append(b, requestDomain...)
	b = append(b, subject...)
	b = append(b, '\n')
	b = append(b, ts...)
	b = append(b, '\n')
	b = append(b, nonce...)
	b = append(b, '\n')
	return hex.AppendEncode(b, sum[:])
}

// SignRequest signs a control-plane request to subject with body at time
// now, and returns the four signature headers to send with it (set them on
// the nats.Msg, adding any other headers afterwards). kp must be a user key
// pair with its seed. The nonce is 16 random bytes.
func SignRequest(kp Signer, subject string, body []byte, now time.Time) (nats.Header, error) {
	pub, err := userPublicKey(kp)
	if err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	if subject == "" {
		return nil, errors.New("sign request: empty subject")
	}
	ms := now.UnixMilli()
	if ms < 0 {
		return nil, fmt.Errorf("sign request: time %s is before 1970", now)
	}
	ts := strconv.FormatInt(ms, 10)
	var n [16]byte
	_, _ = rand.Read(n[:]) // never fails, see crypto/rand.Read
	nonce := base64.RawURLEncoding.EncodeToString(n[:])

	sig, err := kp.Sign(CanonicalRequest(subject, ts, nonce, body))
	if err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	h := make(nats.Header, 4)
	h.Set(HeaderPub, pub)
	h.Set(HeaderTs, ts)
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSig, sigEncoding().EncodeToString(sig))
	return h, nil
}

// Signer signs requests with a user identity. nkeys.KeyPair implements it;
// so can a type that keeps an expanded key for speed.
type Signer interface {
	PublicKey() (string, error)
	Sign(msg []byte) ([]byte, error)
}

var _ Signer = nkeys.KeyPair(nil)

// userPublicKey returns the public key of kp and checks it is a user key.
func userPublicKey(kp Signer) (string, error) {
	if kp == nil {
		return "", fmt.Errorf("%w: no key pair", ErrInvalidUserKey)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("read public key: %w", err)
	}
	// NormalizeUserKey says what kind of key it is if not a user key.
	return NormalizeUserKey(pub)
}

// SignedRequest is the authenticated origin of a verified request.
type SignedRequest struct {
	// Pub is the signer's user public key, normalized.
	Pub string
	// Nonce is the request's nonce, to be claimed once (replay protection).
	Nonce string
	// Timestamp is the signing time claimed by the signer, within the
	// allowed skew of the verifier's clock.
	Timestamp time.Time
}

// VerifyRequest verifies the signature headers h of a request received on
// subject with body, at time now. It checks that every header is present
// once and well formed, that HeaderPub is a user public key, that the
// timestamp is within maxSkew of now in either direction (DefaultMaxSkew if
// maxSkew <= 0), and that the signature over CanonicalRequest verifies with
// that key.
//
// It does not check that the signer is registered or that the nonce is
// fresh: the caller claims SignedRequest.Nonce and looks up
// SignedRequest.Pub. Every error matches one of ErrMissingSignature,
// ErrMalformedHeader, ErrClockSkew or ErrBadSignature, and means 401. It
// never panics, whatever h and body hold.
func VerifyRequest(subject string, h nats.Header, body []byte, now time.Time, maxSkew time.Duration) (SignedRequest, error) {
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	var vals [4]string
	for i, name := range [...]string{HeaderPub, HeaderTs, HeaderNonce, HeaderSig} {
		v, err := headerValue(h, name)
		if err != nil {
			return SignedRequest{}, err
		}
		vals[i] = v
	}
	pubHdr, ts, nonce, sigHdr := vals[0], vals[1], vals[2], vals[3]

	pub, err := NormalizeUserKey(pubHdr)
	if err != nil {
		return SignedRequest{}, fmt.Errorf("%w %s: %w", ErrMalformedHeader, HeaderPub, err)
	}
	ms, err := parseTimestamp(ts)
	if err != nil {
		return SignedRequest{}, err
	}
	if err := checkNonce(nonce); err != nil {
		return SignedRequest{}, err
	}
	if len(sigHdr) != sigEncoding().EncodedLen(ed25519.SignatureSize) {
		return SignedRequest{}, fmt.Errorf("%w %s: want %d characters", ErrMalformedHeader, HeaderSig, sigEncoding().EncodedLen(ed25519.SignatureSize))
	}
	sig, err := sigEncoding().DecodeString(sigHdr)
	if err != nil {
		return SignedRequest{}, fmt.Errorf("%w %s: %w", ErrMalformedHeader, HeaderSig, err)
	}

	at := time.UnixMilli(ms)
	switch d := now.Sub(at); {
	case d > maxSkew:
		return SignedRequest{}, fmt.Errorf("%w: timestamp %s is %s old (max %s)", ErrClockSkew, at.UTC().Format(time.RFC3339Nano), d.Round(time.Millisecond), maxSkew)
	case d < -maxSkew:
		return SignedRequest{}, fmt.Errorf("%w: timestamp %s is %s in the future (max %s)", ErrClockSkew, at.UTC().Format(time.RFC3339Nano), at.Sub(now).Round(time.Millisecond), maxSkew)
	}

	if err := verifySig(pub, CanonicalRequest(subject, ts, nonce, body), sig); err != nil {
		return SignedRequest{}, fmt.Errorf("%w (%s %s)", err, HeaderPub, pub)
	}
	return SignedRequest{Pub: pub, Nonce: nonce, Timestamp: at}, nil
}

// headerValue returns the single non-empty value of header name.
func headerValue(h nats.Header, name string) (string, error) {
	vs := h[name]
	switch {
	case len(vs) == 0 || len(vs) == 1 && vs[0] == "":
		return "", fmt.Errorf("%w: no %s header", ErrMissingSignature, name)
	case len(vs) > 1:
		return "", fmt.Errorf("%w %s: %d values, want 1", ErrMalformedHeader, name, len(vs))
	}
	return vs[0], nil
}

// parseTimestamp parses HeaderTs: decimal digits, no sign or leading zeros.
func parseTimestamp(ts string) (int64, error) {
	if len(ts) > maxTSLen {
		return 0, fmt.Errorf("%w %s: longer than %d digits", ErrMalformedHeader, HeaderTs, maxTSLen)
	}
	for i := 0; i < len(ts); i++ {
		if ts[i] < '0' || ts[i] > '9' {
			return 0, fmt.Errorf("%w %s %s: want unix milliseconds in decimal", ErrMalformedHeader, HeaderTs, quote(ts))
		}
	}
	if len(ts) > 1 && ts[0] == '0' {
		return 0, fmt.Errorf("%w %s %s: leading zero", ErrMalformedHeader, HeaderTs, quote(ts))
	}
	ms, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %s: %w", ErrMalformedHeader, HeaderTs, err)
	}
	return ms, nil
}

// checkNonce checks HeaderNonce: MinNonceLen..MaxNonceLen of [A-Za-z0-9_-].
func checkNonce(nonce string) error {
	if len(nonce) < MinNonceLen || len(nonce) > MaxNonceLen {
		return fmt.Errorf("%w %s: %d characters, want %d to %d", ErrMalformedHeader, HeaderNonce, len(nonce), MinNonceLen, MaxNonceLen)
	}
	for i := 0; i < len(nonce); i++ {
		if !isRoomIDByte(nonce[i]) {
			return fmt.Errorf("%w %s %s: want characters from [A-Za-z0-9_-]", ErrMalformedHeader, HeaderNonce, quote(nonce))
		}
	}
	return nil
}

// verifySig verifies an Ed25519 signature by the normalized user key pub
// over msg. The error is ErrBadSignature, or matches ErrInvalidUserKey if pub
// cannot be decoded.
func verifySig(pub string, msg, sig []byte) error {
	vk, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidUserKey, err)
	}
	if vk.Verify(msg, sig) != nil {
		return ErrBadSignature
	}
	return nil
}
