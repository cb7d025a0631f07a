package identity

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// serverNonce returns a nonce made the way nats-server makes one
// (server/nkey.go generateNonce): 11 random bytes in unpadded base64url,
// 15 characters.
func serverNonce(t testing.TB) []byte {
	t.Helper()
	var raw [11]byte
	if _, err := rand.Read(raw[:]); err != nil {
		t.Fatal(err)
	}
	n := []byte(base64.RawURLEncoding.EncodeToString(raw[:]))
	if len(n) != 15 {
		t.Fatalf("server nonce %q has %d characters, want 15", n, len(n))
	}
	return n
}

func verifier(t testing.TB, id *Identity) nkeys.KeyPair {
	t.Helper()
	v, err := nkeys.FromPublicKey(id.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// alphabet is the base64url alphabet, the characters of login nonces.
const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func TestSignNonceAccepts(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	v := verifier(t, id)
	for _, tc := range []struct {
		name  string
		nonce []byte
	}{
		{"nats-server nonce", serverNonce(t)},
		{"another nats-server nonce", serverNonce(t)},
		{"shortest", []byte(alphabet[:MinLoginNonceLen])},
		{"longest", []byte(alphabet[:MaxLoginNonceLen])},
		{"dashes and underscores", []byte("--__--__--__--_")},
		{"digits", []byte("012345678901234")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !IsNonceForm(tc.nonce) {
				t.Fatalf("IsNonceForm(%q) = false", tc.nonce)
			}
			sig, err := id.SignNonce(tc.nonce)
			if err != nil {
				t.Fatalf("SignNonce(%q): %v", tc.nonce, err)
			}
			if err := v.Verify(tc.nonce, sig); err != nil {
				t.Fatalf("the nonce signature does not verify: %v", err)
			}
			if _, err := id.Sign(tc.nonce); !errors.Is(err, ErrUntaggedMessage) {
				t.Fatalf("Sign(%q) error = %v, want ErrUntaggedMessage", tc.nonce, err)
			}
			if _, err := id.KeyPair().Sign(tc.nonce); !errors.Is(err, ErrUntaggedMessage) {
				t.Fatalf("KeyPair().Sign(%q) error = %v, want ErrUntaggedMessage", tc.nonce, err)
			}
		})
	}
}

func TestSignNonceRefuses(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("A", 4096)
	for _, tc := range []struct {
		name  string
		nonce string
		want  string // in the error
	}{
		{"empty", "", "0 bytes"},
		{"too short", alphabet[:MinLoginNonceLen-1], "7 bytes"},
		{"too long", alphabet + "A", "65 bytes"},
		{"very long", long, "4096 bytes"},
		{"request signing bytes", "unibus-req-v1\nunibus.v1.users.setkey\n1700000000000\nAAAAAAAAAAAAAAAAAAAAAA\n" + strings.Repeat("ab", 32), "bytes"},
		{"newline", "ABCDEFG\nHIJKLMN", "byte 0x0a at offset 7"},
		{"trailing newline", "ABCDEFGHIJKLMN\n", "byte 0x0a at offset 14"},
		{"padding", "ABCDEFGHIJKLMN=", "byte 0x3d"},
		{"standard base64", "ABCDEFG+HIJKLM/", "byte 0x2b"},
		{"space", "ABCDEFG HIJKLMN", "byte 0x20"},
		{"dot", "unibus.v1.users", "byte 0x2e"},
		{"NUL", "ABCDEFG\x00HIJKLMN", "byte 0x00"},
		{"non-ASCII", "ABCDEFG\xffHIJKLMN", "byte 0xff"},
		{"UTF-8 letter", "ABCDEFGéHIJKLM", "byte 0xc3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if IsNonceForm([]byte(tc.nonce)) {
				t.Fatalf("IsNonceForm(%q) = true", tc.nonce)
			}
			sig, err := id.SignNonce([]byte(tc.nonce))
			if !errors.Is(err, ErrBadNonce) {
				t.Fatalf("SignNonce(%q) = %x, %v; want ErrBadNonce", tc.nonce, sig, err)
			}
			if sig != nil {
				t.Fatalf("SignNonce returned a signature with its error")
			}
			msg := err.Error()
			for _, want := range []string{tc.want, "[A-Za-z0-9_-]", "hostile"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if len(tc.nonce) > 0 && strings.Contains(msg, tc.nonce) {
				t.Errorf("error %q repeats the server's nonce", msg)
			}
		})
	}
}

func TestSignRefusesNonceAlphabetOnly(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"", "x", "nonce", alphabet, strings.Repeat(alphabet, 10), "unibus-req-v1"} {
		if _, err := id.Sign([]byte(msg)); !errors.Is(err, ErrUntaggedMessage) {
			t.Errorf("Sign(%q) error = %v, want ErrUntaggedMessage", msg, err)
		}
		if _, err := id.KeyPair().Sign([]byte(msg)); !errors.Is(err, ErrUntaggedMessage) {
			t.Errorf("KeyPair().Sign(%q) error = %v, want ErrUntaggedMessage", msg, err)
		}
	}
	v := verifier(t, id)
	for _, msg := range []string{"unibus-req-v1\n", "a b", "a.b", "\x00", "\xff", "é", "ABCDEFGHIJKLMN\n", "{}"} {
		sig, err := id.Sign([]byte(msg))
		if err != nil {
			t.Errorf("Sign(%q): %v", msg, err)
			continue
		}
		if err := v.Verify([]byte(msg), sig); err != nil {
			t.Errorf("Sign(%q) does not verify: %v", msg, err)
		}
	}
}

// TestMessageSpacesDisjoint: no message is signed by both SignNonce and
// Sign, over random messages biased towards the nonce alphabet and the
// nonce lengths.
func TestMessageSpacesDisjoint(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	r := mrand.New(mrand.NewPCG(1, 2))
	var nonces, apps int
	for range 20000 {
		msg := make([]byte, r.IntN(MaxLoginNonceLen+8))
		for i := range msg {
			if r.IntN(40) == 0 {
				msg[i] = byte(r.IntN(256))
			} else {
				msg[i] = alphabet[r.IntN(len(alphabet))]
			}
		}
		_, nerr := id.SignNonce(msg)
		_, aerr := id.Sign(msg)
		if nerr == nil && aerr == nil {
			t.Fatalf("both SignNonce and Sign signed %q", msg)
		}
		if nerr == nil {
			nonces++
		}
		if aerr == nil {
			apps++
		}
	}
	if nonces == 0 || apps == 0 {
		t.Fatalf("the generator is too narrow: %d nonces, %d application messages signed", nonces, apps)
	}
}

func FuzzMessageSpacesDisjoint(f *testing.F) {
	id, err := Generate()
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{"", "ABCDEFGHIJKLMNO", "unibus-req-v1\nx", alphabet, alphabet + "A", "ABCDEFG\nHIJKLMN"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		_, nerr := id.SignNonce(msg)
		_, aerr := id.Sign(msg)
		if nerr == nil && aerr == nil {
			t.Fatalf("both SignNonce and Sign signed %q", msg)
		}
		if (nerr == nil) != IsNonceForm(msg) {
			t.Fatalf("SignNonce(%q) error = %v, IsNonceForm = %v", msg, nerr, IsNonceForm(msg))
		}
	})
}

// TestSignNonceWithNats: nats.Nkey(pub, id.SignNonce) answers a
// nats-server nonce, and refuses to sign a crafted one.
func TestSignNonceWithNats(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	var opts nats.Options
	if err := nats.Nkey(id.PublicKey(), id.SignNonce)(&opts); err != nil {
		t.Fatal(err)
	}
	nonce := serverNonce(t)
	sig, err := opts.SignatureCB(bytes.Clone(nonce))
	if err != nil {
		t.Fatalf("SignatureCB: %v", err)
	}
	if err := verifier(t, id).Verify(nonce, sig); err != nil {
		t.Fatalf("the nonce signature does not verify: %v", err)
	}
	if _, err := opts.SignatureCB([]byte("unibus-enckey-v1\nU…\n00")); !errors.Is(err, ErrBadNonce) {
		t.Fatalf("SignatureCB of a crafted nonce: error = %v, want ErrBadNonce", err)
	}
}

func TestKeyPairWipeWipesIdentity(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	id.KeyPair().Wipe()
	if _, err := id.Sign([]byte("test-v1\nx")); !errors.Is(err, ErrWiped) {
		t.Fatalf("Sign after KeyPair().Wipe: error = %v, want ErrWiped", err)
	}
	if _, err := id.SignNonce(serverNonce(t)); !errors.Is(err, ErrWiped) {
		t.Fatalf("SignNonce after KeyPair().Wipe: error = %v, want ErrWiped", err)
	}
}
