package svc_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/natstest"
)

// The hostile-client suite of the control plane, against a real node:
// requests that must be refused, floods, and limits. Every case checks the
// code and the human message of the refusal (wantError: also that it
// leaks no internals), that nothing was stored, and that the services
// still serve a good client.

// hostileCase is one hostile request.
type hostileCase struct {
	name    string
	from    *user
	subject string
	body    any // raw bytes, or a value to encode as JSON
	opts    []reqOption
	code    int
	want    []string
}

// run sends the request and checks the refusal, the state and the
// service.
func (tc hostileCase) run(t *testing.T, e *env, good *user, secrets ...string) {
	t.Helper()
	before := e.snapshot(t)
	r := tc.from.request(t, tc.subject, tc.body, tc.opts...)
	wantError(t, r, tc.code, tc.want...)
	desc := r.Header.Get(micro.ErrorHeader)
	for _, s := range secrets {
		if strings.Contains(desc, s) {
			t.Errorf("error %q repeats a secret", desc)
		}
	}
	e.unchanged(t, before)
	decode[subjects.MineResponse](t, good.request(t, subjects.RoomsMine, nil))
}

// invalidUTF8 turns the U+FFFD that json.Marshal wrote for invalid bytes
// back into raw invalid bytes: a body no conforming encoder produces.
func invalidUTF8(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out := bytes.ReplaceAll(b, []byte(`\ufffd`), []byte{0xff})
	if bytes.Equal(out, b) {
		t.Fatalf("no invalid UTF-8 in %s", b)
	}
	return out
}

// ownerSigned signs an owner request as u.
func ownerSigned[R subjects.OwnerSigned](t *testing.T, u *user, req R) R {
	t.Helper()
	if err := subjects.SignOwner(u.kp, req); err != nil {
		t.Fatal(err)
	}
	return req
}

// withTs signs the request with the timestamp header ts, verbatim.
func withTs(u *user, ts string) reqOption {
	return tampered(func(m *nats.Msg) {
		nonce := m.Header.Get(subjects.HeaderNonce)
		sig, err := u.kp.Sign(subjects.CanonicalRequest(m.Subject, ts, nonce, m.Data))
		if err != nil {
			panic(err)
		}
		m.Header.Set(subjects.HeaderTs, ts)
		m.Header.Set(subjects.HeaderSig, base64.RawURLEncoding.EncodeToString(sig))
	})
}

// signedByAnyKey signs the request with kp, of whatever kind (SignRequest
// signs with user keys only), naming pub as the signer.
func signedByAnyKey(kp nkeys.KeyPair, pub string) reqOption {
	return tampered(func(m *nats.Msg) {
		ts, nonce := m.Header.Get(subjects.HeaderTs), m.Header.Get(subjects.HeaderNonce)
		sig, err := kp.Sign(subjects.CanonicalRequest(m.Subject, ts, nonce, m.Data))
		if err != nil {
			panic(err)
		}
		m.Header.Set(subjects.HeaderPub, pub)
		m.Header.Set(subjects.HeaderSig, base64.RawURLEncoding.EncodeToString(sig))
	})
}

// hostileEnv is an environment for the hostile suite: rate limiting on,
// with a burst large enough for the suite's hundreds of requests (rate
// limiting has its own tests).
func hostileEnv(t *testing.T, opts ...envOption) *env {
	return newEnv(t, append([]envOption{withConfig(func(c *svc.Config) { c.RateBurst = 10_000 })}, opts...)...)
}

func TestHostileRequests(t *testing.T) {
	e := hostileEnv(t)
	good := e.carol
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)
	maxReq, maxBundle := svc.DefaultMaxRequestBytes, svc.DefaultMaxBundleBytes

	nested := func(n int, open string) []byte { return bytes.Repeat([]byte(open), n) }
	cases := []hostileCase{
		// Oversize.
		{name: "request over the request limit", from: e.alice, subject: subjects.RoomsGet, body: bytes.Repeat([]byte(" "), maxReq+1),
			code: subjects.CodeTooLarge, want: []string{"over the limit of " + strconv.Itoa(maxReq) + " bytes", subjects.RoomsGet}},
		{name: "rekey over the bundle limit", from: e.alice, subject: subjects.RoomsRekey, body: bytes.Repeat([]byte(" "), maxBundle+1),
			code: subjects.CodeTooLarge, want: []string{"over the limit of " + strconv.Itoa(maxBundle) + " bytes"}},
		{name: "blob chunk over the chunk size", from: e.alice, subject: subjects.BlobsPut,
			body: subjects.BlobPutRequest{RoomID: room.RoomID, Blob: strings.Repeat("ab", 32), Size: 2 << 20, Data: make([]byte, subjects.BlobChunkSize+1)},
			code: subjects.CodeTooLarge, want: []string{"over the chunk size"}},
		{name: "blob over the blob limit", from: e.alice, subject: subjects.BlobsPut,
			body: subjects.BlobPutRequest{RoomID: room.RoomID, Blob: strings.Repeat("ab", 32), Size: math.MaxInt64},
			code: subjects.CodeTooLarge, want: []string{"over the limit"}},

		// Room IDs with wildcards, dots, spaces.
		{name: "room id with a dot", from: e.alice, subject: subjects.RoomsGet, body: subjects.RoomRequest{RoomID: room.RoomID + ".x"},
			code: subjects.CodeBadRequest, want: []string{"room_id", "'.'"}},
		{name: "room id *", from: e.alice, subject: subjects.RoomsMembers, body: subjects.MembersRequest{RoomID: "*"},
			code: subjects.CodeBadRequest, want: []string{"room_id"}},
		{name: "room id >", from: e.alice, subject: subjects.RoomsLeave, body: subjects.RoomRequest{RoomID: ">"},
			code: subjects.CodeBadRequest, want: []string{"room_id"}},
		{name: "room id with a space", from: e.alice, subject: subjects.RoomsKey, body: subjects.KeyRequest{RoomID: "a b"},
			code: subjects.CodeBadRequest, want: []string{"room_id"}},
		{name: "room id of a new room with a wildcard", from: e.alice, subject: subjects.RoomsCreate,
			body: subjects.CreateRoomRequest{RoomID: "room.>", SealedKey: sealedKey(t)}, code: subjects.CodeBadRequest, want: []string{"room_id"}},
		{name: "room id of an invitation with a wildcard", from: e.alice, subject: subjects.RoomsInvite,
			body: ownerSigned(t, e.alice, &subjects.InviteRequest{RoomID: room.RoomID + ".*", Pub: e.carol.pub, Epoch: 1, SealedKey: sealedKey(t)}),
			code: subjects.CodeBadRequest, want: []string{"room_id"}},
		{name: "room id of a rekey with a wildcard", from: e.alice, subject: subjects.RoomsRekey,
			body: ownerSigned(t, e.alice, &subjects.RekeyRequest{RoomID: "*", FromEpoch: 1, ToEpoch: 2, Keys: map[string][]byte{e.alice.pub: sealedKey(t)}}),
			code: subjects.CodeBadRequest, want: []string{"room_id"}},
		{name: "room id of a removal with a wildcard", from: e.alice, subject: subjects.RoomsRemove,
			body: ownerSigned(t, e.alice, &subjects.RemoveRequest{RoomID: ">", Pub: e.bob.pub}), code: subjects.CodeBadRequest, want: []string{"room_id"}},
		{name: "room id of a blob with a wildcard", from: e.alice, subject: subjects.BlobsGet,
			body: subjects.BlobGetRequest{RoomID: room.RoomID + ".>", Blob: strings.Repeat("ab", 32)}, code: subjects.CodeBadRequest, want: []string{"room_id"}},
		{name: "room id of a blob chunk with a wildcard", from: e.alice, subject: subjects.BlobsPut,
			body: subjects.BlobPutRequest{RoomID: "*", Blob: strings.Repeat("ab", 32), Size: 1, Data: []byte{1}}, code: subjects.CodeBadRequest, want: []string{"room_id"}},
		{name: "blob id of a chunk with a dot", from: e.alice, subject: subjects.BlobsPut,
			body: subjects.BlobPutRequest{RoomID: room.RoomID, Blob: strings.Repeat("ab", 31) + ".>", Size: 1, Data: []byte{1}}, code: subjects.CodeBadRequest, want: []string{"blob"}},
		{name: "blob id with a wildcard", from: e.alice, subject: subjects.BlobsGet,
			body: subjects.BlobGetRequest{RoomID: room.RoomID, Blob: "*"}, code: subjects.CodeBadRequest, want: []string{"blob"}},

		// Invalid UTF-8.
		{name: "room name not UTF-8", from: e.alice, subject: subjects.RoomsCreate,
			body: invalidUTF8(t, subjects.CreateRoomRequest{Name: "caf\xff", Mode: subjects.ModeCleartext}), code: subjects.CodeBadRequest, want: []string{"not valid UTF-8"}},
		{name: "room id not UTF-8", from: e.alice, subject: subjects.RoomsGet,
			body: invalidUTF8(t, subjects.RoomRequest{RoomID: "r\xfe"}), code: subjects.CodeBadRequest, want: []string{"not valid UTF-8"}},
		{name: "body not UTF-8 outside strings", from: e.alice, subject: subjects.RoomsMine,
			body: []byte("{\xff}"), code: subjects.CodeBadRequest, want: []string{"not valid UTF-8", "byte 1"}},

		// Deeply nested JSON.
		{name: "100k nested arrays", from: e.alice, subject: subjects.RoomsCreate, body: nested(100_000, "["),
			code: subjects.CodeBadRequest, want: []string{"nested too deeply"}},
		{name: "100k nested objects", from: e.alice, subject: subjects.RoomsRekey, body: nested(100_000, `{"a":`),
			code: subjects.CodeBadRequest, want: []string{"nested too deeply"}},
		{name: "nested arrays in a field", from: e.alice, subject: subjects.RoomsGet, body: append([]byte(`{"room_id":`), nested(50_000, "[")...),
			code: subjects.CodeBadRequest, want: []string{"nested too deeply"}},

		// Negative and huge epochs.
		{name: "negative epoch", from: e.alice, subject: subjects.RoomsKey, body: []byte(`{"room_id":"` + room.RoomID + `","epoch":-1}`),
			code: subjects.CodeBadRequest, want: []string{`"epoch"`, "non-negative integer", "-1"}},
		{name: "epoch beyond 64 bits", from: e.alice, subject: subjects.RoomsKey, body: []byte(`{"room_id":"` + room.RoomID + `","epoch":18446744073709551616}`),
			code: subjects.CodeBadRequest, want: []string{`"epoch"`, "64 bits"}},
		{name: "fractional epoch", from: e.alice, subject: subjects.RoomsKey, body: []byte(`{"room_id":"` + room.RoomID + `","epoch":1.5}`),
			code: subjects.CodeBadRequest, want: []string{`"epoch"`}},
		{name: "epoch 1e30", from: e.alice, subject: subjects.RoomsKey, body: []byte(`{"room_id":"` + room.RoomID + `","epoch":1e30}`),
			code: subjects.CodeBadRequest, want: []string{`"epoch"`}},
		{name: "key of epoch int64 max", from: e.alice, subject: subjects.RoomsKey, body: subjects.KeyRequest{RoomID: room.RoomID, Epoch: math.MaxInt64},
			code: subjects.CodeForbidden, want: []string{"no key", strconv.FormatInt(math.MaxInt64, 10)}},
		{name: "key of epoch uint64 max", from: e.alice, subject: subjects.RoomsKey, body: subjects.KeyRequest{RoomID: room.RoomID, Epoch: math.MaxUint64},
			code: subjects.CodeForbidden, want: []string{"no key"}},
		{name: "invitation for epoch int64 max", from: e.alice, subject: subjects.RoomsInvite,
			body: ownerSigned(t, e.alice, &subjects.InviteRequest{RoomID: room.RoomID, Pub: e.carol.pub, Epoch: math.MaxInt64, SealedKey: sealedKey(t), Grant: grant(t)}),
			code: subjects.CodeConflict, want: []string{"epoch 1", strconv.FormatInt(math.MaxInt64, 10)}},
		{name: "invitation for a negative epoch", from: e.alice, subject: subjects.RoomsInvite,
			body: []byte(`{"room_id":"` + room.RoomID + `","pub":"` + e.carol.pub + `","epoch":-1}`), code: subjects.CodeBadRequest, want: []string{`"epoch"`}},
		{name: "rekey from epoch uint64 max", from: e.alice, subject: subjects.RoomsRekey,
			body: ownerSigned(t, e.alice, &subjects.RekeyRequest{RoomID: room.RoomID, FromEpoch: math.MaxUint64, ToEpoch: 2, Keys: map[string][]byte{e.alice.pub: sealedKey(t), e.bob.pub: sealedKey(t)}, Grants: map[string][]byte{e.alice.pub: grant(t), e.bob.pub: grant(t)}}),
			code: subjects.CodeConflict, want: []string{"is at epoch 1"}},
		{name: "rekey to epoch int64 max", from: e.alice, subject: subjects.RoomsRekey,
			body: ownerSigned(t, e.alice, &subjects.RekeyRequest{RoomID: room.RoomID, FromEpoch: 1, ToEpoch: math.MaxInt64, Keys: map[string][]byte{e.alice.pub: sealedKey(t), e.bob.pub: sealedKey(t)}, Grants: map[string][]byte{e.alice.pub: grant(t), e.bob.pub: grant(t)}}),
			code: subjects.CodeConflict, want: []string{"sealed for epoch " + strconv.FormatInt(math.MaxInt64, 10)}},
		{name: "negative blob size", from: e.alice, subject: subjects.BlobsPut,
			body: subjects.BlobPutRequest{RoomID: room.RoomID, Blob: strings.Repeat("ab", 32), Size: -1}, code: subjects.CodeBadRequest, want: []string{"size", "negative"}},
		{name: "negative chunk index", from: e.alice, subject: subjects.BlobsGet,
			body: subjects.BlobGetRequest{RoomID: room.RoomID, Blob: strings.Repeat("ab", 32), Index: -1}, code: subjects.CodeBadRequest, want: []string{"index must not be negative"}},

		// Timestamps.
		{name: "timestamp an hour old", from: e.alice, subject: subjects.RoomsMine, opts: []reqOption{signedAt(time.Now().Add(-time.Hour))},
			code: subjects.CodeUnauthenticated, want: []string{"clock"}},
		{name: "timestamp an hour ahead", from: e.alice, subject: subjects.RoomsMine, opts: []reqOption{signedAt(time.Now().Add(time.Hour))},
			code: subjects.CodeUnauthenticated, want: []string{"clock"}},
		{name: "timestamp zero", from: e.alice, subject: subjects.RoomsMine, opts: []reqOption{withTs(e.alice, "0")},
			code: subjects.CodeUnauthenticated, want: []string{"clock"}},
		{name: "timestamp int64 max", from: e.alice, subject: subjects.RoomsMine, opts: []reqOption{withTs(e.alice, strconv.FormatInt(math.MaxInt64, 10))},
			code: subjects.CodeUnauthenticated, want: []string{"clock"}},
		{name: "negative timestamp", from: e.alice, subject: subjects.RoomsMine, opts: []reqOption{withTs(e.alice, "-1")},
			code: subjects.CodeUnauthenticated, want: []string{"malformed signature headers"}},
		{name: "timestamp beyond 64 bits", from: e.alice, subject: subjects.RoomsMine, opts: []reqOption{withTs(e.alice, "99999999999999999999")},
			code: subjects.CodeUnauthenticated, want: []string{"malformed signature headers"}},
	}

	// Every field that takes a user key, with every kind of wrong key.
	_, accountPub := natstest.NewKey(t, nkeys.CreateAccount)
	_, serverPub := natstest.NewKey(t, nkeys.CreateServer)
	_, operatorPub := natstest.NewKey(t, nkeys.CreateOperator)
	seed, err := e.bob.kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	badKeys := []struct{ name, key string }{
		{"*", "*"},
		{">", ">"},
		{"a key and a wildcard", e.bob.pub + ".>"},
		{"a key with a dot inside", e.bob.pub[:20] + "." + e.bob.pub[21:]},
		{"an account key", accountPub},
		{"a server key", serverPub},
		{"an operator key", operatorPub},
		{"a seed", string(seed)},
		{"a key and one more character", e.bob.pub + "A"},
	}
	for _, k := range badKeys {
		key := k.key
		cases = append(cases,
			hostileCase{name: "users.add of " + k.name, from: e.admin, subject: subjects.UsersAdd, body: subjects.AddUserRequest{Pub: key},
				code: subjects.CodeBadRequest, want: []string{"pub"}},
			hostileCase{name: "users.get of " + k.name, from: e.alice, subject: subjects.UsersGet, body: subjects.GetUserRequest{Pub: key},
				code: subjects.CodeBadRequest, want: []string{"pub"}},
			hostileCase{name: "users.revoke of " + k.name, from: e.admin, subject: subjects.UsersRevoke, body: subjects.RevokeUserRequest{Pub: key},
				code: subjects.CodeBadRequest, want: []string{"pub"}},
			hostileCase{name: "rooms.invite of " + k.name, from: e.alice, subject: subjects.RoomsInvite,
				body: ownerSigned(t, e.alice, &subjects.InviteRequest{RoomID: room.RoomID, Pub: key, Epoch: 1, SealedKey: sealedKey(t)}),
				code: subjects.CodeBadRequest, want: []string{"pub"}},
			hostileCase{name: "rooms.remove of " + k.name, from: e.alice, subject: subjects.RoomsRemove,
				body: ownerSigned(t, e.alice, &subjects.RemoveRequest{RoomID: room.RoomID, Pub: key, Rekey: &subjects.RekeyBundle{FromEpoch: 1, ToEpoch: 2, Keys: map[string][]byte{e.alice.pub: sealedKey(t)}}}),
				code: subjects.CodeBadRequest, want: []string{"pub"}},
			hostileCase{name: "rooms.remove rekeying to " + k.name, from: e.alice, subject: subjects.RoomsRemove,
				body: ownerSigned(t, e.alice, &subjects.RemoveRequest{RoomID: room.RoomID, Pub: e.bob.pub, Rekey: &subjects.RekeyBundle{FromEpoch: 1, ToEpoch: 2, Keys: map[string][]byte{key: sealedKey(t)}}}),
				code: subjects.CodeBadRequest, want: []string{"rekey.keys key"}},
			hostileCase{name: "rooms.rekey to " + k.name, from: e.alice, subject: subjects.RoomsRekey,
				body: ownerSigned(t, e.alice, &subjects.RekeyRequest{RoomID: room.RoomID, FromEpoch: 1, ToEpoch: 2, Keys: map[string][]byte{e.alice.pub: sealedKey(t), key: sealedKey(t)}}),
				code: subjects.CodeBadRequest, want: []string{"keys key"}},
			hostileCase{name: "signer header of " + k.name, from: e.alice, subject: subjects.RoomsMine,
				opts: []reqOption{tampered(func(m *nats.Msg) { m.Header.Set(subjects.HeaderPub, key) })},
				code: subjects.CodeUnauthenticated, want: []string{"malformed signature headers"}},
		)
	}
	cases = append(cases,
		hostileCase{name: "users.get of a key not UTF-8", from: e.alice, subject: subjects.UsersGet,
			body: invalidUTF8(t, subjects.GetUserRequest{Pub: "U\xfe"}), code: subjects.CodeBadRequest, want: []string{"not valid UTF-8"}},
		hostileCase{name: "signer header not UTF-8", from: e.alice, subject: subjects.RoomsMine,
			opts: []reqOption{tampered(func(m *nats.Msg) { m.Header.Set(subjects.HeaderPub, "U\xff\xfe") })},
			code: subjects.CodeUnauthenticated, want: []string{"malformed signature headers"}},
	)
	// Requests signed with keys of other kinds: their Unibus-Pub is that
	// key, which is no user key.
	for _, kind := range []struct {
		name   string
		create func() (nkeys.KeyPair, error)
	}{{"account", nkeys.CreateAccount}, {"server", nkeys.CreateServer}, {"operator", nkeys.CreateOperator}} {
		kp, pub := natstest.NewKey(t, kind.create)
		cases = append(cases, hostileCase{name: "signed by a key of kind " + kind.name, from: e.alice, subject: subjects.RoomsMine,
			opts: []reqOption{signedByAnyKey(kp, pub)}, code: subjects.CodeUnauthenticated, want: []string{"malformed signature headers"}})
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, e, good, string(seed)) })
	}

	t.Run("over the connection's payload limit", func(t *testing.T) {
		before := e.snapshot(t)
		m := e.alice.msg(t, subjects.RoomsRekey, bytes.Repeat([]byte(" "), 5<<20))
		if _, err := e.alice.nc.RequestMsg(m, requestTimeout); !errors.Is(err, nats.ErrMaxPayload) {
			t.Fatalf("request of 5 MiB: %v, want %v", err, nats.ErrMaxPayload)
		}
		e.unchanged(t, before)
		decode[subjects.MineResponse](t, good.request(t, subjects.RoomsMine, nil))
	})
}

// TestUnsignedFlood: a flood of unsigned requests is refused (401) before
// it takes a worker or touches the store, and a good client is served
// throughout.
func TestUnsignedFlood(t *testing.T) {
	e := hostileEnv(t)
	attacker := e.register(t, "attacker")
	before := e.snapshot(t)
	var refused, other atomic.Int64
	var wrong atomic.Pointer[string]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			subject := []string{subjects.RoomsMine, subjects.RoomsCreate, subjects.UsersList, subjects.BlobsGet}[i%4]
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := nats.NewMsg(subject)
				m.Data = []byte(`{}`)
				if i%2 == 1 {
					m.Header.Set(subjects.HeaderPub, attacker.pub) // claims a key, unsigned
				}
				r, err := attacker.nc.RequestMsg(m, requestTimeout)
				switch {
				case err != nil:
					other.Add(1)
				case r.Header.Get(micro.ErrorCodeHeader) == strconv.Itoa(subjects.CodeUnauthenticated) &&
					strings.Contains(r.Header.Get(micro.ErrorHeader), "not signed"):
					refused.Add(1)
				default:
					other.Add(1)
					s := fmt.Sprintf("%s %s %s", subject, r.Header.Get(micro.ErrorCodeHeader), r.Header.Get(micro.ErrorHeader))
					wrong.Store(&s)
				}
			}
		})
	}
	flooding := true
	defer func() {
		if flooding {
			close(stop)
			wg.Wait()
		}
	}()
	// The good requests go once the flood is under way: every flooding
	// goroutine has had answers.
	floodStart := time.Now()
	for refused.Load()+other.Load() < 8*4 {
		if time.Since(floodStart) > 30*time.Second {
			t.Fatalf("flood not under way after 30s: %d requests answered", refused.Load()+other.Load())
		}
		time.Sleep(10 * time.Millisecond) // poll interval; the bound above ends the wait
	}
	for i := range 50 {
		start := time.Now()
		decode[subjects.MineResponse](t, e.alice.request(t, subjects.RoomsMine, nil))
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("good request %d took %s during the flood", i, took)
		}
	}
	close(stop)
	wg.Wait()
	flooding = false
	if other.Load() != 0 {
		t.Errorf("%d flood requests not refused with 401 (last: %v)", other.Load(), wrong.Load())
	}
	if refused.Load() < 100 {
		t.Errorf("only %d flood requests: no flood", refused.Load())
	}
	t.Logf("%d unsigned requests refused", refused.Load())
	e.unchanged(t, before)
}

// TestRateLimit: one noisy identity is refused with 429 and a retry hint
// while another identity keeps being served; made-up identities share one
// bucket; the noisy one is served again once it waits.
func TestRateLimit(t *testing.T) {
	const rate, burst = 5, 10
	e := newEnv(t, withConfig(func(c *svc.Config) { c.RateLimit, c.RateBurst = rate, burst }))
	noisy, quiet := e.bob, e.alice
	// Both have made requests at setup (setkey), so they have buckets;
	// let them refill. Not synchronization: a token bucket refills with
	// time alone, burst/rate seconds for a full one, and no event says so.
	time.Sleep(burst / rate * time.Second)
	before := e.snapshot(t)

	var limited *nats.Msg
	served := 0
	start := time.Now()
	for range 4 * burst {
		r := noisy.request(t, subjects.RoomsMine, nil)
		if r.Header.Get(micro.ErrorCodeHeader) == "" {
			served++
			continue
		}
		if limited == nil {
			// The other identity is not affected.
			for range burst / 2 {
				decode[subjects.MineResponse](t, quiet.request(t, subjects.RoomsMine, nil))
			}
		}
		limited = r
	}
	if limited == nil {
		t.Fatalf("%d requests in a burst of %d, none refused", 4*burst, burst)
	}
	if bound := burst + int(rate*time.Since(start).Seconds()) + 1; served < burst || served > bound {
		t.Errorf("%d of %d requests served, want the burst of %d and what refilled meanwhile, at most %d", served, 4*burst, burst, bound)
	}
	wantError(t, limited, subjects.CodeTooManyRequests, "too many requests from "+noisy.pub, "5 per second", "retry in")
	var body subjects.ErrorBody
	if err := json.Unmarshal(limited.Data, &body); err != nil {
		t.Fatal(err)
	}
	hint := limited.Header.Get(subjects.HeaderRetryAfter)
	if hint == "" || hint != strconv.FormatInt(body.RetryAfterMs, 10) || body.RetryAfterMs <= 0 || body.RetryAfterMs > 1000/rate {
		t.Fatalf("retry hint %q header, %d ms body: want the same, 1..%d ms", hint, body.RetryAfterMs, 1000/rate)
	}
	// Not synchronization: the test waits the retry-after the refusal
	// named, as a client must, and checks that it is enough.
	time.Sleep(time.Duration(body.RetryAfterMs) * time.Millisecond)
	decode[subjects.MineResponse](t, noisy.request(t, subjects.RoomsMine, nil))
	e.unchanged(t, before)

	if st := e.svc.Rooms().Stats(); dataOf(t, st.Endpoints, subjects.EndpointMine).RateLimited == 0 {
		t.Error("stats count no rate-limited request")
	}

	// Identities the service does not know are looked up apart from the
	// registered ones, and refused at a pace of their own (ten
	// identities' rate and burst): a flood of made-up keys, sent at once,
	// is refused with 401, the burst at once and the rest no faster than
	// the pace, writes nothing (no nonce), and the quiet identity is
	// served meanwhile.
	const flood = 3 * 10 * burst // three times the strangers' burst
	// Each made-up identity gets its answer in its own inbox, which only
	// the deployment's store connection (see user.listen) can read here.
	via, listen := e.admin.nc, e.node.StoreConn
	tag := strings.TrimPrefix(nats.NewInbox(), "_INBOX.")
	replies := make(chan *nats.Msg, flood)
	sub, err := listen.ChanSubscribe("_INBOX.*."+tag+".*", replies)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := listen.Flush(); err != nil {
		t.Fatal(err)
	}
	streams := e.streams(t)
	start = time.Now()
	for i := range flood {
		stranger := e.stranger(t)
		m := stranger.msg(t, subjects.RoomsMine, nil)
		m.Reply = "_INBOX." + stranger.pub + "." + tag + "." + strconv.Itoa(i)
		if err := via.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	decode[subjects.MineResponse](t, quiet.request(t, subjects.RoomsMine, nil))
	for i := range flood {
		select {
		case r := <-replies:
			wantError(t, r, subjects.CodeUnauthenticated, "not a registered user")
		case <-time.After(requestTimeout):
			t.Fatalf("%d of %d replies", i, flood)
		}
	}
	// Beyond the burst, ten identities' rate.
	if took, least := time.Since(start), time.Duration(flood-10*burst)*time.Second/(10*rate); took < least*9/10 {
		t.Errorf("%d unknown identities refused in %s, faster than their pace allows (%s)", flood, took, least)
	}
	// The quiet identity's request claimed one nonce; the flood, none.
	streams["KV_"+kvstore.BucketNonces]++
	if after := e.streams(t); !equalStreams(streams, after) {
		t.Errorf("made-up keys wrote state: %v → %v", streams, after)
	}
	e.unchanged(t, before)
}

// dataOf returns the StatsData of the endpoint named name.
func dataOf(t testing.TB, eps []*micro.EndpointStats, name string) svc.StatsData {
	t.Helper()
	for _, ep := range eps {
		if ep.Name == name {
			var d svc.StatsData
			if err := json.Unmarshal(ep.Data, &d); err != nil {
				t.Fatal(err)
			}
			return d
		}
	}
	t.Fatalf("no endpoint %s", name)
	return svc.StatsData{}
}

// TestRoomLimits: an invitation into a full room (members and pending
// invitations together), the acceptance of an invitation by a user in too
// many rooms, and a room created by a user in too many rooms are refused
// with 409 and a message that says which limit, and nothing is stored. An
// invitation itself never counts against the invitee's limit.
func TestRoomLimits(t *testing.T) {
	e := hostileEnv(t, withConfig(func(c *svc.Config) { c.MaxMembersPerRoom, c.MaxRoomsPerUser = 2, 2 }))
	full := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, full, e.bob)
	invite := func(owner *user, room subjects.RoomInfo, member *user) *subjects.InviteRequest {
		return ownerSigned(t, owner, &subjects.InviteRequest{RoomID: room.RoomID, Pub: member.pub, Epoch: room.Epoch, SealedKey: sealedKey(t), Grant: grant(t)})
	}
	hostileCase{name: "invitation into a full room", from: e.alice, subject: subjects.RoomsInvite, body: invite(e.alice, full, e.carol),
		code: subjects.CodeConflict, want: []string{"room " + full.RoomID + " has 2 members", "(2)", "remove a member"}}.run(t, e, e.carol)

	// A pending invitation takes a place too, so an owner cannot pile
	// them up.
	dave := e.register(t, "dave")
	pending := e.createRoom(t, dave, subjects.ModeE2E)
	e.propose(t, dave, pending, e.bob)
	hostileCase{name: "invitation into a room full with a pending invitation", from: dave, subject: subjects.RoomsInvite, body: invite(dave, pending, e.carol),
		code: subjects.CodeConflict, want: []string{"room " + pending.RoomID + " has 1 members and 1 pending invitations", "(2)", "cancel an invitation"}}.run(t, e, e.carol)

	// carol: a member of bob's room and the owner of her own.
	bobs := e.createRoom(t, e.bob, subjects.ModeE2E)
	e.invite(t, e.bob, bobs, e.carol)
	e.createRoom(t, e.carol, subjects.ModeCleartext)
	hostileCase{name: "third room of a user", from: e.carol, subject: subjects.RoomsCreate,
		body: func() subjects.CreateRoomRequest {
			id, salt := subjects.NewRoomID(e.carol.pub, subjects.ModeE2E)
			return subjects.CreateRoomRequest{RoomID: id, Salt: salt, SealedKey: sealedKey(t), Grant: grant(t)}
		}(),
		code: subjects.CodeConflict, want: []string{"you are a member of 2 rooms", "(2)", "leave a room"}}.run(t, e, e.alice)
	hostileCase{name: "third cleartext room of a user", from: e.carol, subject: subjects.RoomsCreate,
		body: subjects.CreateRoomRequest{Mode: subjects.ModeCleartext}, code: subjects.CodeConflict, want: []string{"2 rooms"}}.run(t, e, e.alice)

	// Inviting carol, at her limit, is a proposal and succeeds; she
	// cannot accept it until she leaves a room.
	second := e.createRoom(t, e.alice, subjects.ModeE2E)
	if got := e.propose(t, e.alice, second, e.carol); got.Role != subjects.RoleInvited {
		t.Fatalf("invited a user at her limit: %+v", got)
	}
	hostileCase{name: "acceptance by a user in too many rooms", from: e.carol, subject: subjects.RoomsAccept, body: subjects.RoomRequest{RoomID: second.RoomID},
		code: subjects.CodeConflict, want: []string{"you are a member of 2 rooms", "(2)", "leave a room before you accept"}}.run(t, e, e.bob)

	// Once carol leaves bob's room, she may accept.
	call[subjects.RoomInfo](t, e.carol, subjects.RoomsLeave, subjects.RoomRequest{RoomID: bobs.RoomID})
	e.accept(t, e.carol, second)
}

// TestEndpointMaxBytes: a per-endpoint body limit overrides the general
// one, shows in the endpoint's metadata and refuses larger bodies with 413.
func TestEndpointMaxBytes(t *testing.T) {
	const limit = 2 << 10
	e := hostileEnv(t, withConfig(func(c *svc.Config) { c.EndpointMaxBytes = map[string]int{subjects.RoomsCreate: limit} }))
	for _, ep := range e.svc.Rooms().Info().Endpoints {
		want := strconv.Itoa(svc.DefaultMaxBundleBytes)
		switch ep.Name {
		case subjects.EndpointCreate:
			want = strconv.Itoa(limit)
		case subjects.EndpointGet, subjects.EndpointLeave, subjects.EndpointMembers, subjects.EndpointMine, subjects.EndpointKey, subjects.EndpointAccept, subjects.EndpointDecline, subjects.EndpointHistory:
			want = strconv.Itoa(svc.DefaultMaxRequestBytes)
		}
		if got := ep.Metadata["max_bytes"]; got != want {
			t.Errorf("%s: max_bytes %s, want %s", ep.Name, got, want)
		}
	}
	hostileCase{name: "create over its endpoint limit", from: e.alice, subject: subjects.RoomsCreate,
		body: subjects.CreateRoomRequest{RoomID: newRoomID(e.alice), SealedKey: make([]byte, limit)},
		code: subjects.CodeTooLarge, want: []string{"over the limit of " + strconv.Itoa(limit) + " bytes for " + subjects.RoomsCreate}}.run(t, e, e.bob)
	e.createRoom(t, e.alice, subjects.ModeE2E) // a normal one fits
}
