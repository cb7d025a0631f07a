package subjects_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/subjects"
)

const skew = 30 * time.Second

// testNow returns a fixed verification time.
func testNow() time.Time { return time.UnixMilli(1_760_000_000_123) }

// signed returns the headers of a request signed by user key n.
func signed(t *testing.T, n byte, subject string, body []byte, at time.Time) nats.Header {
	t.Helper()
	h, err := subjects.SignRequest(testKey(t, nkeys.PrefixByteUser, n), subject, body, at)
	if err != nil {
		t.Fatalf("SignRequest: %v", err)
	}
	return h
}

func cloneHeader(h nats.Header) nats.Header {
	c := make(nats.Header, len(h))
	for k, v := range h {
		c[k] = append([]string(nil), v...)
	}
	return c
}

func TestCanonicalRequest(t *testing.T) {
	got := subjects.CanonicalRequest("unibus.v1.users.get", "1760000000123", "nonce-nonce-nonce", []byte("hello"))
	want := "unibus-req-v1\n" +
		"unibus.v1.users.get\n" +
		"1760000000123\n" +
		"nonce-nonce-nonce\n" +
		"2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	if string(got) != want {
		t.Errorf("CanonicalRequest = %q, want %q", got, want)
	}
	empty := subjects.CanonicalRequest("s", "0", "n", nil)
	if want := "unibus-req-v1\ns\n0\nn\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"; string(empty) != want {
		t.Errorf("CanonicalRequest(nil body) = %q, want %q", empty, want)
	}
}

// TestSignRequestFormat checks the headers against an independent Ed25519
// implementation, as a client in another language would produce them.
func TestSignRequestFormat(t *testing.T) {
	seed := bytes.Repeat([]byte{1}, 32)
	priv := ed25519.NewKeyFromSeed(seed)
	body := []byte(`{"pub":"x"}`)
	h := signed(t, 1, subjects.UsersGet, body, testNow())

	if len(h) != 4 {
		t.Errorf("SignRequest returned %d headers, want 4: %v", len(h), h)
	}
	if got, want := h.Get(subjects.HeaderPub), testPub(t, nkeys.PrefixByteUser, 1); got != want {
		t.Errorf("%s = %q, want %q", subjects.HeaderPub, got, want)
	}
	if got, want := h.Get(subjects.HeaderTs), "1760000000123"; got != want {
		t.Errorf("%s = %q, want %q", subjects.HeaderTs, got, want)
	}
	nonce := h.Get(subjects.HeaderNonce)
	if raw, err := base64.RawURLEncoding.DecodeString(nonce); err != nil || len(raw) != 16 {
		t.Errorf("%s = %q, want 16 bytes of base64url: %v", subjects.HeaderNonce, nonce, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(h.Get(subjects.HeaderSig))
	if err != nil {
		t.Fatalf("%s is not base64url: %v", subjects.HeaderSig, err)
	}
	sum := sha256.Sum256(body)
	msg := []byte("unibus-req-v1\n" + subjects.UsersGet + "\n1760000000123\n" + nonce + "\n" + hex.EncodeToString(sum[:]))
	if !ed25519.Verify(priv.Public().(ed25519.PublicKey), msg, sig) {
		t.Error("signature does not verify with crypto/ed25519 over the canonical request")
	}

	if other := signed(t, 1, subjects.UsersGet, body, testNow()); other.Get(subjects.HeaderNonce) == nonce {
		t.Error("two requests share a nonce")
	}
}

func TestVerifyRequestRoundTrip(t *testing.T) {
	body := []byte(`{"room_id":"abc"}`)
	h := signed(t, 1, subjects.RoomsGet, body, testNow())
	got, err := subjects.VerifyRequest(subjects.RoomsGet, h, body, testNow(), skew)
	if err != nil {
		t.Fatalf("VerifyRequest: %v", err)
	}
	if want := testPub(t, nkeys.PrefixByteUser, 1); got.Pub != want {
		t.Errorf("Pub = %q, want %q", got.Pub, want)
	}
	if got.Nonce != h.Get(subjects.HeaderNonce) {
		t.Errorf("Nonce = %q, want %q", got.Nonce, h.Get(subjects.HeaderNonce))
	}
	if !got.Timestamp.Equal(testNow()) {
		t.Errorf("Timestamp = %v, want %v", got.Timestamp, testNow())
	}

	// Empty bodies (list, mine) sign and verify too.
	h = signed(t, 1, subjects.RoomsMine, nil, testNow())
	if _, err := subjects.VerifyRequest(subjects.RoomsMine, h, []byte{}, testNow(), skew); err != nil {
		t.Errorf("VerifyRequest(empty body): %v", err)
	}
}

func TestVerifyRequestNormalizesPub(t *testing.T) {
	h := signed(t, 1, subjects.RoomsMine, nil, testNow())
	h.Set(subjects.HeaderPub, " "+strings.ToLower(h.Get(subjects.HeaderPub)))
	got, err := subjects.VerifyRequest(subjects.RoomsMine, h, nil, testNow(), skew)
	if err != nil {
		t.Fatalf("VerifyRequest: %v", err)
	}
	if want := testPub(t, nkeys.PrefixByteUser, 1); got.Pub != want {
		t.Errorf("Pub = %q, want %q", got.Pub, want)
	}
}

func TestVerifyRequestTampered(t *testing.T) {
	body := []byte(`{"pub":"UABC"}`)
	tests := []struct {
		name    string
		subject string
		body    []byte
		tamper  func(h nats.Header)
	}{
		{name: "subject", subject: subjects.UsersRevoke, body: body},
		{name: "body", subject: subjects.UsersAdd, body: []byte(`{"pub":"UABD"}`)},
		{name: "body truncated", subject: subjects.UsersAdd, body: body[:len(body)-1]},
		{name: "body empty", subject: subjects.UsersAdd, body: nil},
		{name: "timestamp", subject: subjects.UsersAdd, body: body, tamper: func(h nats.Header) {
			ms, _ := strconv.ParseInt(h.Get(subjects.HeaderTs), 10, 64)
			h.Set(subjects.HeaderTs, strconv.FormatInt(ms+1, 10))
		}},
		{name: "nonce", subject: subjects.UsersAdd, body: body, tamper: func(h nats.Header) {
			n := []byte(h.Get(subjects.HeaderNonce))
			n[0] = map[bool]byte{true: 'b', false: 'a'}[n[0] == 'a']
			h.Set(subjects.HeaderNonce, string(n))
		}},
		{name: "signature bit", subject: subjects.UsersAdd, body: body, tamper: func(h nats.Header) {
			sig, _ := base64.RawURLEncoding.DecodeString(h.Get(subjects.HeaderSig))
			sig[7] ^= 0x10
			h.Set(subjects.HeaderSig, base64.RawURLEncoding.EncodeToString(sig))
		}},
		{name: "signature of another request", subject: subjects.UsersAdd, body: body, tamper: func(h nats.Header) {
			h.Set(subjects.HeaderSig, signed(t, 1, subjects.UsersAdd, body, testNow()).Get(subjects.HeaderSig))
		}},
		{name: "another user's key", subject: subjects.UsersAdd, body: body, tamper: func(h nats.Header) {
			h.Set(subjects.HeaderPub, testPub(t, nkeys.PrefixByteUser, 2))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := signed(t, 1, subjects.UsersAdd, body, testNow())
			if tt.tamper != nil {
				tt.tamper(h)
			}
			_, err := subjects.VerifyRequest(tt.subject, h, tt.body, testNow(), skew)
			if !errors.Is(err, subjects.ErrBadSignature) {
				t.Fatalf("VerifyRequest = %v, want ErrBadSignature", err)
			}
			for _, other := range []error{subjects.ErrMissingSignature, subjects.ErrMalformedHeader, subjects.ErrClockSkew} {
				if errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
		})
	}
}

func TestVerifyRequestMissing(t *testing.T) {
	body := []byte("x")
	for _, name := range []string{subjects.HeaderPub, subjects.HeaderTs, subjects.HeaderNonce, subjects.HeaderSig} {
		t.Run(name, func(t *testing.T) {
			h := signed(t, 1, subjects.UsersList, body, testNow())
			h.Del(name)
			_, err := subjects.VerifyRequest(subjects.UsersList, h, body, testNow(), skew)
			if !errors.Is(err, subjects.ErrMissingSignature) {
				t.Fatalf("without %s: VerifyRequest = %v, want ErrMissingSignature", name, err)
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name %s", err, name)
			}

			h = signed(t, 1, subjects.UsersList, body, testNow())
			h.Set(name, "")
			if _, err := subjects.VerifyRequest(subjects.UsersList, h, body, testNow(), skew); !errors.Is(err, subjects.ErrMissingSignature) {
				t.Errorf("with empty %s: VerifyRequest = %v, want ErrMissingSignature", name, err)
			}

			// Header names are case-sensitive in nats.go.
			h = signed(t, 1, subjects.UsersList, body, testNow())
			v := h.Get(name)
			h.Del(name)
			h.Set(strings.ToLower(name), v)
			if _, err := subjects.VerifyRequest(subjects.UsersList, h, body, testNow(), skew); !errors.Is(err, subjects.ErrMissingSignature) {
				t.Errorf("with lower-case %s: VerifyRequest = %v, want ErrMissingSignature", name, err)
			}
		})
	}
	for _, h := range []nats.Header{nil, {}} {
		if _, err := subjects.VerifyRequest(subjects.UsersList, h, body, testNow(), skew); !errors.Is(err, subjects.ErrMissingSignature) {
			t.Errorf("VerifyRequest(%#v) = %v, want ErrMissingSignature", h, err)
		}
	}
}

func TestVerifyRequestClockSkew(t *testing.T) {
	tests := []struct {
		name    string
		signed  time.Time
		maxSkew time.Duration
		wantErr bool
	}{
		{"same time", testNow(), skew, false},
		{"at the past limit", testNow().Add(-skew), skew, false},
		{"at the future limit", testNow().Add(skew), skew, false},
		{"too old", testNow().Add(-skew - time.Millisecond), skew, true},
		{"too far in the future", testNow().Add(skew + time.Millisecond), skew, true},
		{"an hour old", testNow().Add(-time.Hour), skew, true},
		{"epoch", time.UnixMilli(0), skew, true},
		{"default skew, inside", testNow().Add(-subjects.DefaultMaxSkew), 0, false},
		{"default skew, outside", testNow().Add(subjects.DefaultMaxSkew + time.Millisecond), -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := signed(t, 1, subjects.RoomsMine, nil, tt.signed)
			_, err := subjects.VerifyRequest(subjects.RoomsMine, h, nil, testNow(), tt.maxSkew)
			if tt.wantErr != errors.Is(err, subjects.ErrClockSkew) {
				t.Fatalf("VerifyRequest = %v, want ErrClockSkew: %v", err, tt.wantErr)
			}
			if !tt.wantErr && err != nil {
				t.Fatalf("VerifyRequest = %v", err)
			}
		})
	}

	// A far-future timestamp signed by hand must not overflow the check.
	kp := testKey(t, nkeys.PrefixByteUser, 1)
	for _, ts := range []string{"9223372036854775807", "9000000000000000000"} {
		h := signed(t, 1, subjects.RoomsMine, nil, testNow())
		sig, err := kp.Sign(subjects.CanonicalRequest(subjects.RoomsMine, ts, h.Get(subjects.HeaderNonce), nil))
		if err != nil {
			t.Fatal(err)
		}
		h.Set(subjects.HeaderTs, ts)
		h.Set(subjects.HeaderSig, base64.RawURLEncoding.EncodeToString(sig))
		if _, err := subjects.VerifyRequest(subjects.RoomsMine, h, nil, testNow(), skew); !errors.Is(err, subjects.ErrClockSkew) {
			t.Errorf("ts %s: VerifyRequest = %v, want ErrClockSkew", ts, err)
		}
	}
}

func TestVerifyRequestMalformed(t *testing.T) {
	seed, err := testKey(t, nkeys.PrefixByteUser, 1).Seed()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		header  string
		value   string
		userKey bool // the error also matches ErrInvalidUserKey
	}{
		{"account key", subjects.HeaderPub, testPub(t, nkeys.PrefixByteAccount, 1), true},
		{"operator key", subjects.HeaderPub, testPub(t, nkeys.PrefixByteOperator, 1), true},
		{"seed as key", subjects.HeaderPub, string(seed), true},
		{"garbage key", subjects.HeaderPub, "hello", true},
		{"wildcard key", subjects.HeaderPub, ">", true},
		{"huge key", subjects.HeaderPub, strings.Repeat("U", 1<<16), true},
		{"ts letters", subjects.HeaderTs, "abc", false},
		{"ts negative", subjects.HeaderTs, "-1", false},
		{"ts plus", subjects.HeaderTs, "+1760000000123", false},
		{"ts leading zero", subjects.HeaderTs, "01760000000123", false},
		{"ts fraction", subjects.HeaderTs, "1760000000.123", false},
		{"ts space", subjects.HeaderTs, " 1760000000123", false},
		{"ts too long", subjects.HeaderTs, "12345678901234567890", false},
		{"ts overflow", subjects.HeaderTs, "9999999999999999999", false},
		{"nonce short", subjects.HeaderNonce, "abc", false},
		{"nonce long", subjects.HeaderNonce, strings.Repeat("a", subjects.MaxNonceLen+1), false},
		{"nonce newline", subjects.HeaderNonce, "aaaaaaaaaaaaaaaa\naaaaaa", false},
		{"nonce std base64", subjects.HeaderNonce, "aaaaaaaaaaaaaaaa+/aaaa==", false},
		{"nonce wildcard", subjects.HeaderNonce, "aaaaaaaaaaaaaaaa.>", false},
		{"sig std base64", subjects.HeaderSig, strings.Repeat("+", 86), false},
		{"sig padded", subjects.HeaderSig, strings.Repeat("A", 86) + "==", false},
		{"sig short", subjects.HeaderSig, strings.Repeat("A", 85), false},
		{"sig long", subjects.HeaderSig, strings.Repeat("A", 87), false},
		{"sig non-canonical", subjects.HeaderSig, strings.Repeat("A", 85) + "B", false},
		{"sig huge", subjects.HeaderSig, strings.Repeat("A", 1<<16), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := signed(t, 1, subjects.RoomsMine, nil, testNow())
			h.Set(tt.header, tt.value)
			_, err := subjects.VerifyRequest(subjects.RoomsMine, h, nil, testNow(), skew)
			if !errors.Is(err, subjects.ErrMalformedHeader) {
				t.Fatalf("VerifyRequest = %v, want ErrMalformedHeader", err)
			}
			if got := errors.Is(err, subjects.ErrInvalidUserKey); got != tt.userKey {
				t.Errorf("errors.Is(%v, ErrInvalidUserKey) = %v, want %v", err, got, tt.userKey)
			}
			if !strings.Contains(err.Error(), tt.header) {
				t.Errorf("error %q does not name %s", err, tt.header)
			}
			if strings.Contains(err.Error(), string(seed)) {
				t.Errorf("error %q repeats a seed", err)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
		})
	}

	// Every header must appear exactly once.
	for _, name := range []string{subjects.HeaderPub, subjects.HeaderTs, subjects.HeaderNonce, subjects.HeaderSig} {
		h := signed(t, 1, subjects.RoomsMine, nil, testNow())
		h.Add(name, h.Get(name))
		if _, err := subjects.VerifyRequest(subjects.RoomsMine, h, nil, testNow(), skew); !errors.Is(err, subjects.ErrMalformedHeader) {
			t.Errorf("%s twice: VerifyRequest = %v, want ErrMalformedHeader", name, err)
		}
	}
}

func TestSignRequestRejects(t *testing.T) {
	user := testKey(t, nkeys.PrefixByteUser, 1)
	pubOnly, err := nkeys.FromPublicKey(testPub(t, nkeys.PrefixByteUser, 1))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		kp      nkeys.KeyPair
		subject string
		now     time.Time
		is      error // nil: any error
	}{
		{"account key", testKey(t, nkeys.PrefixByteAccount, 1), subjects.UsersAdd, testNow(), subjects.ErrInvalidUserKey},
		{"operator key", testKey(t, nkeys.PrefixByteOperator, 1), subjects.UsersAdd, testNow(), subjects.ErrInvalidUserKey},
		{"no key", nil, subjects.UsersAdd, testNow(), subjects.ErrInvalidUserKey},
		{"public key only", pubOnly, subjects.UsersAdd, testNow(), nkeys.ErrCannotSign},
		{"empty subject", user, "", testNow(), nil},
		{"before 1970", user, subjects.UsersAdd, time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := subjects.SignRequest(tt.kp, tt.subject, nil, tt.now)
			if err == nil {
				t.Fatalf("SignRequest = %v, want an error", h)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("SignRequest error = %v, want %v", err, tt.is)
			}
			if h != nil {
				t.Errorf("SignRequest returned headers %v with an error", h)
			}
		})
	}
}

// FuzzVerifyRequest checks that VerifyRequest never panics, and that what it
// accepts is well formed and really signed by the claimed key.
func FuzzVerifyRequest(f *testing.F) {
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		f.Fatal(err)
	}
	body := []byte(`{"room_id":"abc"}`)
	h, err := subjects.SignRequest(kp, subjects.RoomsGet, body, testNow())
	if err != nil {
		f.Fatal(err)
	}
	pub, ts, nonce, sig := h.Get(subjects.HeaderPub), h.Get(subjects.HeaderTs), h.Get(subjects.HeaderNonce), h.Get(subjects.HeaderSig)
	f.Add(subjects.RoomsGet, pub, ts, nonce, sig, body)
	f.Add(subjects.RoomsGet, strings.ToLower(pub), ts, nonce, sig, body)
	f.Add(subjects.RoomsKey, pub, ts, nonce, sig, body)
	f.Add(subjects.RoomsGet, pub, ts, nonce, sig, []byte{})
	f.Add("", "", "", "", "", []byte(nil))
	f.Add(subjects.RoomsGet, "A"+pub[1:], "-1", "\n", "====", []byte{0xff})
	f.Add(subjects.RoomsGet, pub, "99999999999999999999", nonce, sig[:85]+"B", body)
	f.Add(subjects.RoomsGet, "U", "0", strings.Repeat("a", 64), strings.Repeat("A", 86), body)
	f.Add("\x00", "\x00", "\x00", "\x00", "\x00", []byte("\x00"))

	f.Fuzz(func(t *testing.T, subject, pub, ts, nonce, sig string, body []byte) {
		h := nats.Header{}
		for name, v := range map[string]string{
			subjects.HeaderPub: pub, subjects.HeaderTs: ts,
			subjects.HeaderNonce: nonce, subjects.HeaderSig: sig,
		} {
			if v != "" {
				h.Set(name, v)
			}
		}
		req, err := subjects.VerifyRequest(subject, cloneHeader(h), body, testNow(), skew)
		if err != nil {
			var known bool
			for _, e := range []error{subjects.ErrMissingSignature, subjects.ErrMalformedHeader, subjects.ErrClockSkew, subjects.ErrBadSignature} {
				known = known || errors.Is(err, e)
			}
			if !known {
				t.Fatalf("VerifyRequest error %v matches no signature sentinel", err)
			}
			return
		}
		if !nkeys.IsValidPublicUserKey(req.Pub) {
			t.Fatalf("accepted Pub %q is not a user key", req.Pub)
		}
		if req.Nonce != nonce {
			t.Fatalf("Nonce = %q, want %q", req.Nonce, nonce)
		}
		if d := testNow().Sub(req.Timestamp); d > skew || d < -skew {
			t.Fatalf("accepted timestamp %v outside the skew", req.Timestamp)
		}
		raw, err := base64.RawURLEncoding.DecodeString(sig)
		if err != nil {
			t.Fatalf("accepted undecodable signature %q", sig)
		}
		vk, err := nkeys.FromPublicKey(req.Pub)
		if err != nil {
			t.Fatal(err)
		}
		if err := vk.Verify(subjects.CanonicalRequest(subject, ts, nonce, body), raw); err != nil {
			t.Fatalf("accepted a signature that does not verify: %v", err)
		}
	})
}
