package subjects_test

import (
	"crypto/ed25519"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/subjects"
)

// The fuzz targets of this file, with FuzzVerifyRequest in signed_test.go.
// Their seed corpora are in testdata/fuzz and run with every `go test`;
// `make fuzz` explores beyond them.

// maxErrorLen bounds the message of a validation error, which quotes at
// most 64 bytes of each value it names (up to 4 characters each when
// escaped) and may name two (a subject and its room ID): it never grows
// with the input.
const maxErrorLen = 1024

// fuzzNonce is the fixed nonce of the requests signed by tamperBase.
const fuzzNonce = "fuzz-nonce-0123456789"

// signatureHeaders are the four headers of a signed request, in order.
var signatureHeaders = [...]string{subjects.HeaderPub, subjects.HeaderTs, subjects.HeaderNonce, subjects.HeaderSig}

// tamperBase returns a deterministic signed request (signer, subject, body
// and headers) that VerifyRequest accepts at testNow.
func tamperBase(t testing.TB) (pub, subject string, body []byte, h nats.Header) {
	t.Helper()
	kp := testKey(t, nkeys.PrefixByteUser, 1)
	pub = testPub(t, nkeys.PrefixByteUser, 1)
	subject = subjects.RoomsInvite
	body = []byte(`{"room_id":"r1","pub":"` + testPub(t, nkeys.PrefixByteUser, 2) + `","epoch":3}`)
	ts := strconv.FormatInt(testNow().UnixMilli(), 10)
	sig, err := kp.Sign(subjects.CanonicalRequest(subject, ts, fuzzNonce, body))
	if err != nil {
		t.Fatal(err)
	}
	h = nats.Header{}
	h.Set(subjects.HeaderPub, pub)
	h.Set(subjects.HeaderTs, ts)
	h.Set(subjects.HeaderNonce, fuzzNonce)
	h.Set(subjects.HeaderSig, base64.RawURLEncoding.EncodeToString(sig))
	return pub, subject, body, h
}

// flip returns b with byte pos (modulo its length) XORed with x, which must
// not be 0; an empty b becomes {x}.
func flip(b []byte, pos int, x byte) []byte {
	if len(b) == 0 {
		return []byte{x}
	}
	c := append([]byte(nil), b...)
	c[pos%len(c)] ^= x
	return c
}

// insert returns b with x inserted before byte pos (modulo its length + 1).
func insert(b []byte, pos int, x byte) []byte {
	pos %= len(b) + 1
	c := make([]byte, 0, len(b)+1)
	c = append(c, b[:pos]...)
	c = append(c, x)
	return append(c, b[pos:]...)
}

// cut returns b without byte pos (modulo its length); an empty b stays
// empty, which the caller must treat as no change.
func cut(b []byte, pos int) []byte {
	if len(b) == 0 {
		return b
	}
	pos %= len(b)
	c := append([]byte(nil), b[:pos]...)
	return append(c, b[pos+1:]...)
}

// Tamper operations of FuzzVerifyRequestTamper, applied to the body, the
// subject or one of the four headers. On the body and the subject, the
// header operations (rename, repeat, delete) delete a byte.
const (
	tamperFlip   = iota // XOR one byte
	tamperInsert        // insert one byte
	tamperCut           // delete one byte
	tamperRename        // change one byte of a header's name
	tamperRepeat        // add a second value to a header
	tamperDelete        // delete a header
	tamperOps
)

// FuzzVerifyRequestTamper takes one genuinely signed request and changes
// one thing in it: a byte of the body, of the subject, of a header's value
// or name, or a header repeated or dropped. VerifyRequest must reject every
// such request with one of its four sentinels. The one exception is by
// design: Unibus-Pub is normalized (case, surrounding space), so a change
// that still normalizes to the signer's key names the same signer, and the
// request must then verify to exactly the same result.
func FuzzVerifyRequestTamper(f *testing.F) {
	pub, subject, body, base := tamperBase(f)
	want, err := subjects.VerifyRequest(subject, cloneHeader(base), body, testNow(), skew)
	if err != nil {
		f.Fatalf("the untampered request does not verify: %v", err)
	}
	if want.Pub != pub || want.Nonce != fuzzNonce || !want.Timestamp.Equal(testNow()) {
		f.Fatalf("the untampered request verifies to %+v", want)
	}

	for target := range uint8(2 + len(signatureHeaders)) {
		for op := range uint8(tamperOps) {
			f.Add(target, op, uint16(0), byte(1))
			f.Add(target, op, uint16(17), byte(0x20))
		}
	}

	f.Fuzz(func(t *testing.T, target, op uint8, pos uint16, x byte) {
		if x == 0 {
			x = 1 // a flip must change the byte
		}
		p := int(pos)
		subj, b, h := subject, body, cloneHeader(base)
		changed := true
		mutate := func(v []byte) []byte {
			switch op % tamperOps {
			case tamperFlip:
				return flip(v, p, x)
			case tamperInsert:
				return insert(v, p, x)
			default:
				out := cut(v, p)
				changed = len(v) > 0
				return out
			}
		}
		switch target %= 2 + uint8(len(signatureHeaders)); {
		case target == 0:
			b = mutate(b)
		case target == 1:
			subj = string(mutate([]byte(subj)))
		default:
			name := signatureHeaders[target-2]
			switch op % tamperOps {
			case tamperRename:
				v := h[name]
				delete(h, name)
				h[string(flip([]byte(name), p, x))] = v
			case tamperRepeat:
				v := h.Get(name) // repeated as is, or flipped
				if x&1 == 1 {
					v = string(flip([]byte(v), p, x))
				}
				h[name] = append(h[name], v)
			case tamperDelete:
				delete(h, name)
			default:
				h[name] = []string{string(mutate([]byte(h.Get(name))))}
			}
		}
		if !changed {
			return
		}

		got, err := subjects.VerifyRequest(subj, h, b, testNow(), skew)
		if err == nil {
			if v := h[subjects.HeaderPub]; target >= 2 && signatureHeaders[target-2] == subjects.HeaderPub && len(v) == 1 {
				if n, nerr := subjects.NormalizeUserKey(v[0]); nerr == nil && n == pub &&
					got.Pub == want.Pub && got.Nonce == want.Nonce && got.Timestamp.Equal(want.Timestamp) {
					return // another spelling of the signer's key
				}
			}
			t.Fatalf("a tampered request verifies (target %d, op %d): subject %q, body %q, headers %q: %+v",
				target, op%tamperOps, subj, b, h, got)
		}
		if !matchesSignatureSentinel(err) {
			t.Fatalf("VerifyRequest error %v matches no signature sentinel", err)
		}
		if got != (subjects.SignedRequest{}) {
			t.Fatalf("VerifyRequest returned %+v with error %v", got, err)
		}
	})
}

// matchesSignatureSentinel reports whether err matches one of the four
// errors VerifyRequest documents.
func matchesSignatureSentinel(err error) bool {
	for _, e := range []error{subjects.ErrMissingSignature, subjects.ErrMalformedHeader, subjects.ErrClockSkew, subjects.ErrBadSignature} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// checkTokenRunes fails unless s is a token by the rules of ValidateToken,
// checked rune by rune here independently of it.
func checkTokenRunes(t *testing.T, what, s string) {
	t.Helper()
	if s == "" || len(s) > subjects.MaxTokenLen || !utf8.ValidString(s) {
		t.Fatalf("%s %q accepted: empty, too long or not UTF-8", what, s)
	}
	for _, r := range s {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			t.Fatalf("%s %q accepted with %U", what, s, r)
		}
	}
}

// checkValidationError fails unless err matches kind and its message is
// bounded.
func checkValidationError(t *testing.T, fn string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s error %v does not match %v", fn, err, kind)
	}
	if n := len(err.Error()); n > maxErrorLen {
		t.Fatalf("%s error is %d bytes long: %.100q…", fn, n, err)
	}
}

// FuzzValidateToken checks that ValidateToken never panics, that whatever
// it accepts is one subject token free of '.', '*', '>', whitespace,
// control characters and invalid UTF-8, and that every room ID is a token.
func FuzzValidateToken(f *testing.F) {
	for _, s := range []string{
		"a", "room-1", "UABC", "_INBOX", "$SRV", "a.b", "*", ">", "a b", "a\tb", "a\u00a0b",
		"a\u2028b", "a\x00b", "a\x7fb", "\xff", "é", "日本", strings.Repeat("x", subjects.MaxTokenLen),
		strings.Repeat("x", subjects.MaxTokenLen+1), "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		err := subjects.ValidateToken(tok)
		if rerr := subjects.ValidateRoomID(tok); rerr == nil && err != nil {
			t.Fatalf("room ID %q is not a token: %v", tok, err)
		}
		if err != nil {
			checkValidationError(t, "ValidateToken", err, subjects.ErrInvalidToken)
			return
		}
		checkTokenRunes(t, "token", tok)
		if n := len(strings.Split("unibus.v1."+tok+".x", ".")); n != 4 {
			t.Fatalf("token %q makes a subject of %d tokens, want 4", tok, n)
		}
	})
}

// kvKey is the pattern of a JetStream KV key.
var kvKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)

// FuzzValidateRoomID checks that ValidateRoomID never panics, that what it
// accepts is a token and a KV key made of [A-Za-z0-9_-], that its errors
// match ErrInvalidToken exactly when ValidateToken fails, and that Room and
// RoomIDFromSubject are inverses on it.
func FuzzValidateRoomID(f *testing.F) {
	id, _ := subjects.NewRoomID("UOWNER", subjects.ModeE2E)
	for _, s := range []string{
		id, "AAAAAAAAAAAAAAAAAAAAAA", "a", "room_1-x", "a.b", "a*", ">", "a b", "é",
		"\xff", "a/b", "a=b", strings.Repeat("a", subjects.MaxRoomIDLen), strings.Repeat("a", subjects.MaxRoomIDLen+1),
		strings.Repeat("a", subjects.MaxTokenLen+1), "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := subjects.ValidateRoomID(id)
		subject, serr := subjects.Room(id)
		if (err == nil) != (serr == nil) {
			t.Fatalf("ValidateRoomID(%q) = %v but Room = %v", id, err, serr)
		}
		if err != nil {
			checkValidationError(t, "ValidateRoomID", err, subjects.ErrInvalidRoomID)
			if tokErr := subjects.ValidateToken(id); errors.Is(err, subjects.ErrInvalidToken) != (tokErr != nil) {
				t.Fatalf("ValidateRoomID(%q) = %v, ValidateToken = %v: they disagree on the token", id, err, tokErr)
			}
			if subject != "" {
				t.Fatalf("Room(%q) = %q with an error", id, subject)
			}
			return
		}
		checkTokenRunes(t, "room ID", id)
		if len(id) > subjects.MaxRoomIDLen || strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
			t.Fatalf("room ID %q accepted: too long or outside [A-Za-z0-9_-]", id)
		}
		if !kvKey.MatchString(id) || !kvKey.MatchString(id+"."+id) {
			t.Fatalf("room ID %q is not a KV key token", id)
		}
		if subject != "unibus.v1.room."+id {
			t.Fatalf("Room(%q) = %q", id, subject)
		}
		back, err := subjects.RoomIDFromSubject(subject)
		if err != nil || back != id {
			t.Fatalf("RoomIDFromSubject(Room(%q)) = %q, %v", id, back, err)
		}
	})
}

// FuzzRoomIDFromSubject checks that RoomIDFromSubject never panics and
// accepts exactly the subjects Room builds: one valid room ID after the
// room prefix, nothing more, nothing less.
// FuzzCheckRoomOwner checks, for any owner, salt and claimed ID, that
// RoomIDFor always makes a valid room ID, and that CheckRoomOwner accepts
// exactly the ID RoomIDFor makes from a salt of RoomSaltLen bytes, with an
// error that matches ErrInvalidRoomID and stays bounded otherwise.
func FuzzCheckRoomOwner(f *testing.F) {
	owner := "UCEEXCCX6TVKCYJ4MFIE3M2NJPVPGRSRPIHDDXR43XKNTNBADWOQXRMY"
	salt := []byte("0123456789abcdef")
	f.Add(owner, salt, subjects.RoomIDFor(owner, subjects.ModeE2E, salt))
	f.Add(owner, salt, "ops")
	f.Add(owner, salt[:15], subjects.RoomIDFor(owner, subjects.ModeE2E, salt[:15]))
	f.Add("", []byte{}, "")
	f.Add(owner+"\n", salt, subjects.RoomIDFor(owner, subjects.ModeE2E, append([]byte("\n"), salt...)))
	f.Fuzz(func(t *testing.T, owner string, salt []byte, claimed string) {
		id := subjects.RoomIDFor(owner, subjects.ModeE2E, salt)
		if err := subjects.ValidateRoomID(id); err != nil || len(id) != 22 {
			t.Fatalf("RoomIDFor(%q, e2e, %x) = %q: %v", owner, salt, id, err)
		}
		err := subjects.CheckRoomOwner(claimed, owner, subjects.ModeE2E, salt)
		if want := claimed == id && len(salt) == subjects.RoomSaltLen; (err == nil) != want {
			t.Fatalf("CheckRoomOwner(%q, %q, e2e, %x) = %v; RoomIDFor = %q", claimed, owner, salt, err, id)
		}
		if err != nil {
			checkValidationError(t, "CheckRoomOwner", err, subjects.ErrInvalidRoomID)
		}
	})
}

func FuzzRoomIDFromSubject(f *testing.F) {
	for _, s := range []string{
		"unibus.v1.room.abc", "unibus.v1.room.", "unibus.v1.room", "unibus.v1.room.a.b", "unibus.v1.room.*",
		"unibus.v1.room.>", "unibus.v1.room.a b", "unibus.v1.rooms.get", "UNIBUS.v1.room.abc", " unibus.v1.room.abc",
		"unibus.v1.room.abc\n", "unibus.v1.room.\xff", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subject string) {
		id, err := subjects.RoomIDFromSubject(subject)
		if err != nil {
			checkValidationError(t, "RoomIDFromSubject", err, subjects.ErrInvalidSubject)
			if id != "" {
				t.Fatalf("RoomIDFromSubject(%q) = %q with an error", subject, id)
			}
			return
		}
		if verr := subjects.ValidateRoomID(id); verr != nil {
			t.Fatalf("RoomIDFromSubject(%q) = %q, not a room ID: %v", subject, id, verr)
		}
		if again, err := subjects.Room(id); err != nil || again != subject {
			t.Fatalf("Room(RoomIDFromSubject(%q)) = %q, %v", subject, again, err)
		}
	})
}

// nkeyEncoding is the base32 of nkeys' text forms.
var nkeyEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// Lengths of the text forms of a seed (two prefix bytes, the seed, a CRC)
// and of a private key (a prefix byte, the Ed25519 private key, a CRC).
var (
	seedTextLen    = nkeyEncoding.EncodedLen(2 + ed25519.SeedSize + 2)
	privateTextLen = nkeyEncoding.EncodedLen(1 + ed25519.PrivateKeySize + 2)
)

// secretsIn returns the seeds and private keys found anywhere in s, upper
// case.
func secretsIn(s string) []string {
	u := strings.ToUpper(s)
	var out []string
	for i := 0; i+seedTextLen <= len(u); i++ {
		if w := u[i : i+seedTextLen]; w[0] == 'S' {
			if _, _, err := nkeys.DecodeSeed([]byte(w)); err == nil {
				out = append(out, w)
			}
		}
	}
	for i := 0; i+privateTextLen <= len(u); i++ {
		if w := u[i : i+privateTextLen]; w[0] == 'P' {
			if _, err := nkeys.Decode(nkeys.PrefixBytePrivate, []byte(w)); err == nil {
				out = append(out, w)
			}
		}
	}
	return out
}

// FuzzNormalizeUserKey checks that NormalizeUserKey never panics; that what
// it accepts is a canonical user public key (upper case, trimmed,
// idempotent) and a safe token; that its errors are bounded and never
// repeat a seed or private key found in the input, however it is wrapped;
// and that the inbox builders agree with it.
func FuzzNormalizeUserKey(f *testing.F) {
	user, account := testKey(f, nkeys.PrefixByteUser, 1), testKey(f, nkeys.PrefixByteAccount, 1)
	pub, _ := user.PublicKey()
	apub, _ := account.PublicKey()
	seed, _ := user.Seed()
	aseed, _ := account.Seed()
	priv, _ := user.PrivateKey()
	for _, s := range []string{
		pub, strings.ToLower(pub), " " + pub + "\n", apub, string(seed), string(aseed), string(priv),
		strings.ToLower(string(seed)), `"` + string(seed) + `"`, "seed: " + string(seed), "\u200b" + string(seed),
		string(seed) + " " + strings.Repeat("x", 80), "<" + string(priv) + ">",
		pub[:55], pub + "A", "U", "", " ", "\xff", "U.*", "ſ" + string(seed[1:]), strings.Repeat("U", 200),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		key, err := subjects.NormalizeUserKey(s)
		inbox, ierr := subjects.InboxPrefix(s)
		all, aerr := subjects.InboxAll(s)
		if err != nil {
			checkValidationError(t, "NormalizeUserKey", err, subjects.ErrInvalidUserKey)
			if key != "" || ierr == nil || aerr == nil {
				t.Fatalf("NormalizeUserKey(%q) = %q, %v; InboxPrefix = %q, %v; InboxAll = %q, %v", s, key, err, inbox, ierr, all, aerr)
			}
			msg := strings.ToUpper(err.Error())
			for _, secret := range secretsIn(s) {
				if strings.Contains(msg, secret) {
					t.Fatalf("NormalizeUserKey(%q) error repeats a secret key: %v", s, err)
				}
			}
			return
		}
		if !nkeys.IsValidPublicUserKey(key) || len(key) != 56 || strings.ToUpper(key) != key {
			t.Fatalf("NormalizeUserKey(%q) = %q, not a canonical user key", s, key)
		}
		if want := strings.ToUpper(strings.TrimSpace(s)); key != want {
			t.Fatalf("NormalizeUserKey(%q) = %q, want %q", s, key, want)
		}
		if again, err := subjects.NormalizeUserKey(key); err != nil || again != key {
			t.Fatalf("NormalizeUserKey is not idempotent on %q: %q, %v", key, again, err)
		}
		checkTokenRunes(t, "user key", key)
		if ierr != nil || inbox != "_INBOX."+key || aerr != nil || all != "_INBOX."+key+".>" {
			t.Fatalf("inboxes of %q: %q, %v; %q, %v", s, inbox, ierr, all, aerr)
		}
	})
}

// TestNormalizeUserKeyFuzzFindings pins what FuzzNormalizeUserKey and
// FuzzVerifyRequestTamper found: nkeys accepts one or three characters
// after a valid key (encoding/base32 ignores them), which made a second
// spelling of the same key; and an error repeated a seed that was quoted,
// prefixed or too long.
func TestNormalizeUserKeyFuzzFindings(t *testing.T) {
	kp := testKey(t, nkeys.PrefixByteUser, 1)
	pub := testPub(t, nkeys.PrefixByteUser, 1)
	for _, s := range []string{pub + "A", pub + "7", pub + "AAA", strings.ToLower(pub) + "q"} {
		if key, err := subjects.NormalizeUserKey(s); !errors.Is(err, subjects.ErrInvalidUserKey) {
			t.Errorf("NormalizeUserKey(%q) = %q, %v; want ErrInvalidUserKey", s, key, err)
		}
		if p, err := subjects.InboxPrefix(s); err == nil {
			t.Errorf("InboxPrefix(%q) = %q", s, p)
		}
	}

	// A request signed by pub but naming pub+"A" must not verify: it
	// would be another user record for the same key.
	ts := strconv.FormatInt(testNow().UnixMilli(), 10)
	sig, err := kp.Sign(subjects.CanonicalRequest(subjects.RoomsMine, ts, fuzzNonce, nil))
	if err != nil {
		t.Fatal(err)
	}
	h := nats.Header{}
	h.Set(subjects.HeaderPub, pub+"A")
	h.Set(subjects.HeaderTs, ts)
	h.Set(subjects.HeaderNonce, fuzzNonce)
	h.Set(subjects.HeaderSig, base64.RawURLEncoding.EncodeToString(sig))
	if got, err := subjects.VerifyRequest(subjects.RoomsMine, h, nil, testNow(), skew); !errors.Is(err, subjects.ErrMalformedHeader) {
		t.Errorf("VerifyRequest with %s %s+\"A\" = %+v, %v; want ErrMalformedHeader", subjects.HeaderPub, pub, got, err)
	}

	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := kp.PrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		`"` + string(seed) + `"`, "\u200b" + string(seed), "x" + string(seed), "key: " + strings.ToLower(string(seed)),
		string(seed) + " " + strings.Repeat("x", 80), "<" + string(priv) + ">", `"` + string(seed[:40]),
	} {
		_, err := subjects.NormalizeUserKey(s)
		if !errors.Is(err, subjects.ErrInvalidUserKey) {
			t.Fatalf("NormalizeUserKey(%q) = %v, want ErrInvalidUserKey", s, err)
		}
		msg := strings.ToUpper(err.Error())
		if strings.Contains(msg, string(seed[:40])) || strings.Contains(msg, string(priv[:40])) {
			t.Errorf("NormalizeUserKey(%q) error repeats the secret: %v", s, err)
		}
	}
}
