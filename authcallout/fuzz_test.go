package authcallout

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// fuzzKey returns the key pair of kind prefix whose raw seed is 32 bytes of
// b. Curve keys need their own constructor.
func fuzzKey(t testing.TB, prefix nkeys.PrefixByte, b byte) nkeys.KeyPair {
	t.Helper()
	raw := bytes.Repeat([]byte{b}, 32)
	var kp nkeys.KeyPair
	var err error
	if prefix == nkeys.PrefixByteCurve {
		var seed []byte
		if seed, err = nkeys.EncodeSeed(prefix, raw); err == nil {
			kp, err = nkeys.FromCurveSeed(seed)
		}
	} else {
		kp, err = nkeys.FromRawSeed(prefix, raw)
	}
	if err != nil {
		t.Fatalf("key of kind %v: %v", prefix, err)
	}
	return kp
}

// fuzzServerNonce is the nonce the fuzz requests' server sent its clients.
const fuzzServerNonce = "fuzz-server-nonce-8Zq3"

// calloutFixture is a deterministic callout setup: the keys, an allowlist
// with one registered and one revoked user, and genuine requests.
type calloutFixture struct {
	server, issuer, xkey, serverXKey nkeys.KeyPair
	user, revoked, stranger          nkeys.KeyPair
	// assigned is the server-assigned user key of every request.
	assigned string
	store    natstest.MemoryCalloutStore
}

func newCalloutFixture(t testing.TB) *calloutFixture {
	t.Helper()
	fx := &calloutFixture{
		server:     fuzzKey(t, nkeys.PrefixByteServer, 0x11),
		issuer:     fuzzKey(t, nkeys.PrefixByteAccount, 0x12),
		xkey:       fuzzKey(t, nkeys.PrefixByteCurve, 0x13),
		serverXKey: fuzzKey(t, nkeys.PrefixByteCurve, 0x14),
		user:       fuzzKey(t, nkeys.PrefixByteUser, 0x15),
		revoked:    fuzzKey(t, nkeys.PrefixByteUser, 0x16),
		stranger:   fuzzKey(t, nkeys.PrefixByteUser, 0x17),
		assigned:   mustPub(fuzzKey(t, nkeys.PrefixByteUser, 0x18)),
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// The allowlist: users by key.
	fx.store = natstest.MemoryCalloutStore{
		Users: map[string]kvstore.User{
			mustPub(fx.user):    {Pub: mustPub(fx.user), AddedAt: at},
			mustPub(fx.revoked): {Pub: mustPub(fx.revoked), AddedAt: at, RevokedAt: &at},
		},
	}
	return fx
}

// service returns a callout service that has not subscribed: enough for
// its decode, authorize and respond steps.
func (fx *calloutFixture) service(t testing.TB, withXKey bool) *Service {
	t.Helper()
	cfg := Config{Store: fx.store, Issuer: fx.issuer}
	if withXKey {
		cfg.XKey = fx.xkey
	}
	cfg.setDefaults()
	sign, err := newSigner(cfg.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	return &Service{cfg: cfg, now: func() time.Time { return time.Unix(1_767_225_600, 0) }, sign: sign}
}

// request returns the request JWT of the server for a client presenting
// kp's key, signing the nonce with it, plus its form sealed to the
// callout's xkey.
func (fx *calloutFixture) request(t testing.TB, kp nkeys.KeyPair) (token string, sealed []byte) {
	t.Helper()
	sig, err := kp.Sign([]byte(fuzzServerNonce))
	if err != nil {
		t.Fatal(err)
	}
	rc := jwt.NewAuthorizationRequestClaims(fx.assigned)
	rc.Server = jwt.ServerID{Name: "fuzz", Host: "127.0.0.1", ID: mustPub(fx.server), XKey: mustPub(fx.serverXKey)}
	rc.UserNkey = fx.assigned
	rc.ClientInformation = jwt.ClientInformation{Host: "127.0.0.1", ID: 7, Kind: "Client", Type: "nats", Nonce: fuzzServerNonce}
	rc.ConnectOptions = jwt.ConnectOptions{Nkey: mustPub(kp), SignedNonce: base64.RawURLEncoding.EncodeToString(sig), Lang: "go", Protocol: 1}
	rc.IssuedAt = 1_767_225_600
	token, err = rc.Encode(fx.server)
	if err != nil {
		t.Fatal(err)
	}
	if sealed, err = fx.serverXKey.Seal([]byte(token), mustPub(fx.xkey)); err != nil {
		t.Fatal(err)
	}
	return token, sealed
}

// FuzzDecodeAuthorize feeds arbitrary request bodies and Nats-Server-Xkey
// headers to the callout's decode step (xkey decryption, JWT decoding and
// verification), then to authorize and respond, with and without xkey. It
// must never panic; decode must refuse an unencrypted request when xkey is
// on; and it must admit nothing but the genuine request of the registered
// user: no other bytes decode to a request that carries that user's
// signature over the server's nonce, and nobody else is registered.
func FuzzDecodeAuthorize(f *testing.F) {
	fx := newCalloutFixture(f)
	plain, withXKey := fx.service(f, false), fx.service(f, true)
	serverXKey := mustPub(fx.serverXKey)
	genuine, sealed := fx.request(f, fx.user)
	if _, err := authorizeBytes(plain, "", []byte(genuine)); err != nil {
		f.Fatalf("the genuine request is refused: %v", err)
	}
	if _, err := authorizeBytes(withXKey, serverXKey, sealed); err != nil {
		f.Fatalf("the genuine sealed request is refused: %v", err)
	}
	for _, kp := range []nkeys.KeyPair{fx.user, fx.revoked, fx.stranger} {
		token, sealed := fx.request(f, kp)
		f.Add(false, "", []byte(token))
		f.Add(true, serverXKey, sealed)
		f.Add(true, "", []byte(token))
		f.Add(true, serverXKey, []byte(token))
	}
	f.Add(false, "", []byte(""))
	f.Add(false, "", []byte("a.b.c"))
	f.Add(true, mustPub(fx.xkey), sealed)
	f.Add(true, "XNOTAKEY", sealed[:20])

	f.Fuzz(func(t *testing.T, xkeyOn bool, hdr string, data []byte) {
		s := plain
		if xkeyOn {
			s = withXKey
		}
		req, err := authorizeBytes(s, hdr, data)
		if req == nil {
			if xkeyOn && hdr == "" && !errors.Is(err, ErrDenied) {
				t.Fatalf("decode of an unencrypted request with xkey on = %v, want ErrDenied", err)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrDenied) {
				t.Fatalf("authorize error %v does not match ErrDenied", err)
			}
			return
		}
		if !nkeys.IsValidPublicServerKey(req.Issuer) {
			t.Fatalf("admitted a request issued by %q", req.Issuer)
		}
		opts := req.ConnectOptions
		if opts.Nkey != mustPub(fx.user) || req.ClientInformation.Nonce != fuzzServerNonce || req.UserNkey != fx.assigned {
			t.Fatalf("admitted a request that is not the genuine one: nkey %q, nonce %q, user_nkey %q", opts.Nkey, req.ClientInformation.Nonce, req.UserNkey)
		}
	})
}

// authorizeBytes runs the steps of handle on one request body and xkey
// header: decode, authorize, and respond (to a message bound to no
// subscription, so that nothing is sent). It returns the decoded request, or
// nil, and the first error, which is nil only for an admission whose user
// JWT checks out.
func authorizeBytes(s *Service, serverXKey string, data []byte) (*jwt.AuthorizationRequestClaims, error) {
	msg := &nats.Msg{Subject: requestSubject, Data: data, Header: nats.Header{}}
	if serverXKey != "" {
		msg.Header.Set(xkeyHeader, serverXKey)
	}
	req, xk, err := s.decode(msg)
	if err != nil {
		return nil, err
	}
	if xk != serverXKey {
		return req, errors.New("decode returned another xkey than the header's")
	}
	userJWT, pub, err := s.authorize(context.Background(), req)
	// Signing (and sealing) an admission must work; only the send fails
	// here. A denial may fail to sign (a request naming no valid user
	// key): the server then denies at its timeout.
	if rerr := s.respond(msg, req, xk, userJWT, err); err == nil && !errors.Is(rerr, nats.ErrMsgNotBound) {
		return req, fmt.Errorf("respond: %w", rerr)
	}
	if err != nil {
		return req, err
	}
	uc, err := jwt.DecodeUserClaims(userJWT)
	switch {
	case err != nil:
		return req, err
	case uc.Subject != req.UserNkey || uc.Issuer != mustPub(s.cfg.Issuer) || uc.Name != pub:
		return req, errors.New("the user JWT names the wrong user or issuer")
	}
	inbox, err := subjects.InboxAll(pub)
	if err != nil || !uc.Sub.Allow.Contains(inbox) || uc.Pub.Allow.Contains(">") || !uc.Pub.Deny.Contains("$JS.>") {
		return req, errors.New("the user JWT grants the wrong permissions")
	}
	// Exactly the user's own permissions, the same whatever its rooms.
	if want, err := Permissions(pub, false); err != nil || !reflect.DeepEqual(uc.Permissions, want) {
		return req, fmt.Errorf("the user JWT grants %+v, want %+v (%v)", uc.Permissions, want, err)
	}
	return req, nil
}

// TestDecodeRejectsMalformedXKeyHeader pins what FuzzDecodeAuthorize found:
// a Nats-Server-Xkey header that decodes to more than a curve key (58
// base32 characters, or a valid key and three more) made nkeys' Open panic
// in the worker, which took the whole process down.
func TestDecodeRejectsMalformedXKeyHeader(t *testing.T) {
	fx := newCalloutFixture(t)
	s := fx.service(t, true)
	_, sealed := fx.request(t, fx.user)
	key := mustPub(fx.serverXKey)
	for _, hdr := range []string{
		"MX7QWFM7OAH3RKVXYO3BTIDWWCJWVHN2B4IDWWCJWUVKYOXOTXZZXNZJQN", // found by the fuzzer
		key + "AAA", key + "A", key + "AAAAAAAA", strings.ToLower(key), key[:55], mustPub(fx.user), "X",
	} {
		msg := &nats.Msg{Subject: requestSubject, Data: sealed, Header: nats.Header{xkeyHeader: {hdr}}}
		if req, _, err := s.decode(msg); !errors.Is(err, ErrDenied) {
			t.Errorf("decode with %s %q = %v, %v; want ErrDenied", xkeyHeader, hdr, req, err)
		}
	}
	msg := &nats.Msg{Subject: requestSubject, Data: sealed, Header: nats.Header{xkeyHeader: {key}}}
	if _, _, err := s.decode(msg); err != nil {
		t.Fatalf("decode of the genuine sealed request: %v", err)
	}
}
