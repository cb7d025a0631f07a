package svc

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/subjects"
)

// maxFuzzMessageLen bounds the message of a refusal: it travels in the
// Nats-Service-Error header and the error body, and quotes at most a
// bounded part of what it names, whatever the size of the request.
const maxFuzzMessageLen = 1024

// fuzzKey returns the user key pair whose raw seed is 32 bytes of b.
func fuzzKey(t testing.TB, b byte) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return kp, pub
}

// decodeFixture holds a valid request of every type, the owner-signed ones
// and the encryption-key binding signed by fixed keys, so that the fuzz
// target can tell a genuine signature from a forgery. Inputs cached by an
// earlier run that signed other samples with the same keys pass for
// forgeries: after changing a signed sample, clear the fuzz cache
// (go clean -fuzzcache).
type decodeFixture struct {
	owner, caller string
	// samples holds a valid request per request type.
	samples map[reflect.Type]any
	// ownerSigned holds the signing bytes of the genuinely owner-signed
	// samples.
	ownerSigned [][]byte
	// encKey is the encryption key the caller's sample binds.
	encKey []byte
}

func newDecodeFixture(t testing.TB) *decodeFixture {
	t.Helper()
	ownerKP, owner := fuzzKey(t, 0x21)
	callerKP, caller := fuzzKey(t, 0x22)
	_, member := fuzzKey(t, 0x23)
	room := "AAAAAAAAAAAAAAAAAAAAAA"
	blob := subjects.BlobID([]byte("hello"))
	sealed := bytes.Repeat([]byte{0x5a}, 48) // short: the validators do not open it
	grant := bytes.Repeat([]byte{0x67}, subjects.GrantLen)
	salt := bytes.Repeat([]byte{0x73}, subjects.RoomSaltLen)
	fx := &decodeFixture{owner: owner, caller: caller, encKey: bytes.Repeat([]byte{0x42}, 64)}

	encSig, err := subjects.SignEncKeyBinding(callerKP, fx.encKey, 1, time.Unix(1767225600, 0))
	if err != nil {
		t.Fatal(err)
	}
	invite := &subjects.InviteRequest{RoomID: room, Pub: member, Epoch: 3, SealedKey: sealed, Grant: grant}
	remove := &subjects.RemoveRequest{RoomID: room, Pub: member, Rekey: &subjects.RekeyBundle{
		FromEpoch: 3, ToEpoch: 4,
		Keys:   map[string][]byte{owner: sealed, caller: sealed},
		Grants: map[string][]byte{owner: grant, caller: grant},
	}}
	rekey := &subjects.RekeyRequest{RoomID: room, FromEpoch: 3, ToEpoch: 4,
		Keys:   map[string][]byte{owner: sealed, member: sealed},
		Grants: map[string][]byte{owner: grant, member: grant},
	}
	for _, r := range []subjects.OwnerSigned{invite, remove, rekey} {
		if err := subjects.SignOwner(ownerKP, r); err != nil {
			t.Fatal(err)
		}
		b, err := r.SigningBytes()
		if err != nil {
			t.Fatal(err)
		}
		fx.ownerSigned = append(fx.ownerSigned, b)
	}
	fx.samples = map[reflect.Type]any{}
	for _, v := range []any{
		&subjects.AddUserRequest{Pub: member, Name: "Zoë", Admin: true},
		&subjects.GetUserRequest{Pub: member},
		&subjects.ListUsersRequest{After: member, Limit: 50},
		&subjects.RevokeUserRequest{Pub: member},
		&subjects.SetKeyRequest{EncKey: fx.encKey, EncKeySig: encSig, EncKeyVersion: 1, EncKeyIssuedAt: time.Unix(1767225600, 0)},
		&subjects.CreateRoomRequest{RoomID: subjects.RoomIDFor(owner, subjects.ModeE2E, salt), Salt: salt, Name: "ops", Mode: subjects.ModeE2E, History: subjects.HistoryKeep, HistoryMaxAge: "72h", SealedKey: sealed, Grant: grant},
		&subjects.RoomRequest{RoomID: room},
		&subjects.MembersRequest{RoomID: room, Pub: member},
		invite, remove, rekey,
		&subjects.KeyRequest{RoomID: room, Epoch: 2},
		&subjects.BlobPutRequest{RoomID: room, Blob: blob, Size: 5, Index: 0, Data: []byte("hello")},
		&subjects.BlobGetRequest{RoomID: room, Blob: blob, Index: 0},
		&subjects.HistoryRequest{RoomID: room, From: 3, Until: 9, Limit: 50},
		&subjects.EventsRequest{From: 2, Limit: 10},
		&struct{}{},
	} {
		fx.samples[reflect.TypeOf(v).Elem()] = v
	}
	return fx
}

// FuzzDecodeRequest feeds arbitrary bodies to decodeStrict with the
// request type of an endpoint picked by the first input, and the decoded
// request to the validators the handlers apply (validate.go, and the blob
// checks). Nothing may panic. A refusal must be a 400 whose message is
// bounded and safe in a header. A decoded request must re-encode to JSON
// that decodes strictly to an equal value (nil and empty lists alike), and
// that JSON must be a fixed point. Whatever a validator accepts must be in
// its documented domain, and an owner or encryption-key signature may
// verify only over the content that was genuinely signed.
func FuzzDecodeRequest(f *testing.F) {
	eps := subjects.Endpoints()
	fx := newDecodeFixture(f)
	for i, ep := range eps {
		sample, ok := fx.samples[ep.Request]
		if !ok {
			f.Fatalf("endpoint %s: no sample %s request: add one to newDecodeFixture", ep.Subject, ep.Request)
		}
		body, err := json.Marshal(sample)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(i), body)
		f.Add(uint8(i), []byte(""))
		f.Add(uint8(i), []byte(`{"room_id":"a.b","pub":"x","keys":{"":""},"extra":1}`))
	}
	f.Add(uint8(0), []byte(`{"pub":"x"} {}`))
	f.Add(uint8(0), []byte(`{"PUB":"x","pub":"y"}`))
	f.Add(uint8(0), []byte("{\"name\":\"\xff\"}"))
	f.Add(uint8(0), []byte(`{"name":"\ud800"}`))
	f.Add(uint8(0), []byte(`[]`))
	f.Add(uint8(0), []byte(`{"pub":1}`))

	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		ep := eps[int(which)%len(eps)]
		v := reflect.New(ep.Request)
		if err := decodeStrict(body, v.Interface()); err != nil {
			checkRefusal(t, "decodeStrict", err, subjects.CodeBadRequest)
			return
		}
		j, err := json.Marshal(v.Interface())
		if err != nil {
			t.Fatalf("re-encode a decoded %s: %v", ep.Request, err)
		}
		v2 := reflect.New(ep.Request)
		if err := decodeStrict(j, v2.Interface()); err != nil {
			t.Fatalf("decodeStrict refuses its own re-encoding %s of a %s: %v", j, ep.Request, err)
		}
		if !equalJSONValue(v.Elem(), v2.Elem()) {
			t.Fatalf("%s changed through JSON:\n%#v\n%#v", ep.Request, v.Elem().Interface(), v2.Elem().Interface())
		}
		if j2, err := json.Marshal(v2.Interface()); err != nil || !bytes.Equal(j, j2) {
			t.Fatalf("re-encoding is not a fixed point: %s, then %s (%v)", j, j2, err)
		}
		fx.validate(t, v.Interface())
	})
}

// checkRefusal fails unless err is an *Error with one of codes whose
// message is bounded, valid UTF-8 and free of control characters (it is
// sent as a header value).
func checkRefusal(t *testing.T, what string, err error, codes ...int) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s error %v is not an *Error", what, err)
	}
	if !slices.Contains(codes, e.Code) {
		t.Fatalf("%s error has code %d, want one of %v: %v", what, e.Code, codes, err)
	}
	if len(e.Message) > maxFuzzMessageLen {
		t.Fatalf("%s error message is %d bytes: %.100q…", what, len(e.Message), e.Message)
	}
	if !utf8.ValidString(e.Message) || strings.ContainsFunc(e.Message, unicode.IsControl) {
		t.Fatalf("%s error message is not header-safe text: %q", what, e.Message)
	}
}

// validate runs the handlers' validators on a decoded request and checks
// what they accept.
func (fx *decodeFixture) validate(t *testing.T, req any) {
	switch r := req.(type) {
	case *subjects.AddUserRequest:
		checkPub(t, r.Pub)
		checkNameAccepted(t, r.Name)
	case *subjects.GetUserRequest:
		checkPub(t, r.Pub)
	case *subjects.ListUsersRequest:
		after, limit, err := parseUsersPage(r)
		if err != nil {
			checkRefusal(t, "parseUsersPage", err, subjects.CodeBadRequest)
			break
		}
		if limit < 1 || limit > subjects.MaxListUsersLimit || (r.Limit != 0 && limit != r.Limit) {
			t.Fatalf("parseUsersPage accepted limit %d as %d", r.Limit, limit)
		}
		if after != "" {
			checkPub(t, r.After)
		}
	case *subjects.RevokeUserRequest:
		checkPub(t, r.Pub)
	case *subjects.SetKeyRequest:
		if err := subjects.VerifyEncKeyBinding(fx.caller, r.EncKey, r.EncKeyVersion, r.EncKeyIssuedAt, r.EncKeySig); err == nil && !bytes.Equal(r.EncKey, fx.encKey) {
			t.Fatalf("a forged encryption-key binding verifies: %x", r.EncKey)
		}
	case *subjects.CreateRoomRequest:
		checkNameAccepted(t, r.Name)
		if r.RoomID != "" {
			checkRoomID(t, r.RoomID)
		}
		fx.checkOwnRoomID(t, r)
		if len(r.SealedKey) != 0 {
			checkSealedKeyAccepted(t, r.SealedKey)
		}
		if len(r.Grant) != 0 {
			checkGrantAccepted(t, r.Grant)
		}
	case *subjects.HistoryRequest:
		if err := checkHistoryRequest(r); err != nil {
			checkRefusal(t, "checkHistoryRequest", err, subjects.CodeBadRequest)
			break
		}
		checkRoomID(t, r.RoomID)
		switch {
		case r.Limit < 0 || r.Limit > subjects.MaxHistoryLimit, r.Last < 0 || r.Last > subjects.MaxHistoryLimit:
			t.Fatalf("checkHistoryRequest accepted limit %d, last %d", r.Limit, r.Last)
		case r.Last > 0 && (r.From != 0 || !r.Since.IsZero() || r.Until != 0), r.Last == 0 && r.Before != 0:
			t.Fatalf("checkHistoryRequest accepted a page both forward and backward: %+v", r)
		case r.Until != 0 && r.Until < r.From:
			t.Fatalf("checkHistoryRequest accepted until %d below from %d", r.Until, r.From)
		}
	case *subjects.EventsRequest:
		if err := checkEventsRequest(r); err != nil {
			checkRefusal(t, "checkEventsRequest", err, subjects.CodeBadRequest)
		} else if r.Limit < 0 || r.Limit > subjects.MaxEventsLimit {
			t.Fatalf("checkEventsRequest accepted limit %d", r.Limit)
		}
	case *subjects.RoomRequest:
		checkRoomID(t, r.RoomID)
	case *subjects.MembersRequest:
		checkRoomID(t, r.RoomID)
		if r.Pub != "" {
			checkPub(t, r.Pub)
		}
	case *subjects.KeyRequest:
		checkRoomID(t, r.RoomID)
	case *subjects.InviteRequest:
		checkRoomID(t, r.RoomID)
		checkPub(t, r.Pub)
		checkSealedKeyAccepted(t, r.SealedKey)
		checkGrantAccepted(t, r.Grant)
		fx.checkOwnerSig(t, r)
	case *subjects.RemoveRequest:
		checkRoomID(t, r.RoomID)
		checkPub(t, r.Pub)
		if r.Rekey != nil {
			checkKeys(t, r.Rekey.Keys, r.Rekey.Grants)
		}
		fx.checkOwnerSig(t, r)
	case *subjects.RekeyRequest:
		checkRoomID(t, r.RoomID)
		checkKeys(t, r.Keys, r.Grants)
		fx.checkOwnerSig(t, r)
	case *subjects.BlobPutRequest:
		checkRoomID(t, r.RoomID)
		checkBlobID(t, r.Blob)
		checkChunkAccepted(t, r)
	case *subjects.BlobGetRequest:
		checkRoomID(t, r.RoomID)
		checkBlobID(t, r.Blob)
	case *struct{}:
	default:
		t.Fatalf("no validation for request type %T: add it", req)
	}
}

// checkOwnerSig fails if r's owner signature verifies over anything else
// than the genuinely signed samples.
func (fx *decodeFixture) checkOwnerSig(t *testing.T, r subjects.OwnerSigned) {
	t.Helper()
	msg, err := r.SigningBytes()
	if err != nil {
		t.Fatalf("SigningBytes of a decoded request: %v", err)
	}
	if err := subjects.VerifyOwner(fx.owner, r); err == nil && !slices.ContainsFunc(fx.ownerSigned, func(b []byte) bool { return bytes.Equal(b, msg) }) {
		t.Fatalf("a forged owner signature verifies: %#v", r)
	}
}

func checkPub(t *testing.T, s string) {
	t.Helper()
	pub, err := parsePub("pub", s)
	if err != nil {
		checkRefusal(t, "parsePub", err, subjects.CodeBadRequest)
		return
	}
	if want, err := subjects.NormalizeUserKey(s); err != nil || pub != want {
		t.Fatalf("parsePub(%q) = %q, NormalizeUserKey = %q, %v", s, pub, want, err)
	}
}

func checkRoomID(t *testing.T, id string) {
	t.Helper()
	got, err := parseRoomID(id)
	if err != nil {
		checkRefusal(t, "parseRoomID", err, subjects.CodeBadRequest)
		return
	}
	if got != id || subjects.ValidateRoomID(id) != nil {
		t.Fatalf("parseRoomID(%q) = %q, not a room ID", id, got)
	}
}

func checkBlobID(t *testing.T, id string) {
	t.Helper()
	got, err := parseBlobID(id)
	if err != nil {
		checkRefusal(t, "parseBlobID", err, subjects.CodeBadRequest)
		return
	}
	if got != id || subjects.ValidateBlobID(id) != nil {
		t.Fatalf("parseBlobID(%q) = %q, not a blob ID", id, got)
	}
}

func checkNameAccepted(t *testing.T, name string) {
	t.Helper()
	if err := checkName(name); err != nil {
		checkRefusal(t, "checkName", err, subjects.CodeBadRequest)
		return
	}
	if len(name) > MaxNameBytes || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) || strings.ContainsFunc(name, func(r rune) bool { return unicode.Is(unicode.Cf, r) }) {
		t.Fatalf("checkName accepted %q", name)
	}
}

func checkSealedKeyAccepted(t *testing.T, k []byte) {
	t.Helper()
	if err := checkSealedKey("sealed_key", k); err != nil {
		checkRefusal(t, "checkSealedKey", err, subjects.CodeBadRequest)
		return
	}
	if len(k) == 0 || len(k) > MaxSealedKeyBytes {
		t.Fatalf("checkSealedKey accepted %d bytes", len(k))
	}
}

func checkGrantAccepted(t *testing.T, g []byte) {
	t.Helper()
	if err := checkGrant("grant", g); err != nil {
		checkRefusal(t, "checkGrant", err, subjects.CodeBadRequest)
		return
	}
	if len(g) != subjects.GrantLen {
		t.Fatalf("checkGrant accepted %d bytes", len(g))
	}
}

// checkOwnRoomID: the ID of a room the fixture's owner creates is one
// RoomIDFor(owner, mode, salt) names, whether the request or the service made it.
func (fx *decodeFixture) checkOwnRoomID(t *testing.T, r *subjects.CreateRoomRequest) {
	t.Helper()
	mode := r.Mode
	if mode == "" {
		mode = subjects.ModeE2E
	}
	id, salt, err := ownRoomID(fx.owner, mode, r)
	if err != nil {
		checkRefusal(t, "ownRoomID", err, subjects.CodeBadRequest)
		return
	}
	if err := subjects.CheckRoomOwner(id, fx.owner, mode, salt); err != nil {
		t.Fatalf("ownRoomID accepted room_id %q, salt %x: %v", r.RoomID, r.Salt, err)
	}
	if r.RoomID != "" && (id != r.RoomID || !bytes.Equal(salt, r.Salt)) {
		t.Fatalf("ownRoomID turned room_id %q, salt %x into %q, %x", r.RoomID, r.Salt, id, salt)
	}
}

func checkKeys(t *testing.T, keys, grants map[string][]byte) {
	t.Helper()
	out, err := parseKeys("keys", keys, "grants", grants)
	if err != nil {
		checkRefusal(t, "parseKeys", err, subjects.CodeBadRequest)
		return
	}
	if len(out) != len(keys) || len(out) != len(grants) {
		t.Fatalf("parseKeys turned %d keys and %d grants into %d", len(keys), len(grants), len(out))
	}
	for pub, k := range keys {
		n, err := subjects.NormalizeUserKey(pub)
		if err != nil {
			t.Fatalf("parseKeys accepted member %q: %v", pub, err)
		}
		if got, ok := out[n]; !ok || !bytes.Equal(got.Sealed, k) || len(k) == 0 || len(k) > MaxSealedKeyBytes {
			t.Fatalf("parseKeys: member %q has %d bytes, in the result %d (present: %v)", pub, len(k), len(got.Sealed), ok)
		}
	}
	for pub, g := range grants {
		n, err := subjects.NormalizeUserKey(pub)
		if err != nil {
			t.Fatalf("parseKeys accepted a grant for %q: %v", pub, err)
		}
		if got, ok := out[n]; !ok || !bytes.Equal(got.Grant, g) || len(g) != subjects.GrantLen {
			t.Fatalf("parseKeys: the grant for %q has %d bytes, in the result %d (present: %v)", pub, len(g), len(got.Grant), ok)
		}
	}
}

func checkChunkAccepted(t *testing.T, r *subjects.BlobPutRequest) {
	t.Helper()
	h := &blobHandlers{handlers: &handlers{cfg: Config{MaxBlobBytes: DefaultMaxBlobBytes}}}
	if err := h.checkChunk(r); err != nil {
		checkRefusal(t, "checkChunk", err, subjects.CodeBadRequest, subjects.CodeTooLarge)
		return
	}
	n := subjects.BlobChunks(r.Size)
	if r.Size < 0 || r.Size > DefaultMaxBlobBytes || r.Index < 0 || r.Index >= n || len(r.Data) != subjects.BlobChunkLen(r.Size, r.Index) {
		t.Fatalf("checkChunk accepted size %d, index %d of %d chunks, %d bytes", r.Size, r.Index, n, len(r.Data))
	}
}

// equalJSONValue reports whether a and b are equal as JSON values of the
// same Go type: like reflect.DeepEqual, but a nil and an empty slice or map
// are equal (omitempty and JSON null make them so).
func equalJSONValue(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalJSONValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for _, k := range a.MapKeys() {
			bv := b.MapIndex(k)
			if !bv.IsValid() || !equalJSONValue(a.MapIndex(k), bv) {
				return false
			}
		}
		return true
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return equalJSONValue(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := range a.NumField() {
			if !equalJSONValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	}
	return a.Equal(b)
}

// TestDecodeStrictBoundsUnknownField pins what FuzzDecodeRequest found: the
// refusal of an unknown field repeated its name whole, so a bundle request
// (4 MiB allowed) with a long field name got a reply of twice that (header
// and body), over max_payload, which the client never received.
func TestDecodeStrictBoundsUnknownField(t *testing.T) {
	for _, name := range []string{
		strings.Repeat("x", 100_000),
		"x" + strings.Repeat("é", 40) + "\n" + strings.Repeat("y", 200), // the cut falls inside a rune
		"short\u00a0name",
	} {
		key, err := json.Marshal(name)
		if err != nil {
			t.Fatal(err)
		}
		var req subjects.RekeyRequest
		err = decodeStrict([]byte(`{"room_id":"r",`+string(key)+`:1}`), &req)
		checkRefusal(t, "decodeStrict", err, subjects.CodeBadRequest)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("decodeStrict = %v, want an *Error", err)
		}
		prefix := string([]rune(name)[:10])
		if !strings.HasPrefix(e.Message, "unknown field "+strings.TrimSuffix(strconv.Quote(prefix), `"`)) {
			t.Errorf("message %q does not name the field", e.Message)
		}
	}
}
