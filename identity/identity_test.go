package identity

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nkeys"
)

// seedOf returns the encoded seed of a new key pair made by create.
func seedOf(t *testing.T, create func() (nkeys.KeyPair, error)) []byte {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatalf("create key pair: %v", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatalf("seed: %v", err)
	}
	return bytes.Clone(seed)
}

func pubOf(t *testing.T, seed []byte) string {
	t.Helper()
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		t.Fatalf("from seed: %v", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	return pub
}

const credsTemplate = `-----BEGIN NATS USER JWT-----
eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVIn0.c2ln
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
%s
------END USER NKEY SEED------

*************************************************************
`

const decoratedTemplate = `-----BEGIN USER NKEY SEED-----
%s
------END USER NKEY SEED------
`

func TestFromSeed(t *testing.T) {
	user := seedOf(t, nkeys.CreateUser)
	account := seedOf(t, nkeys.CreateAccount)
	operator := seedOf(t, nkeys.CreateOperator)
	server := seedOf(t, nkeys.CreateServer)
	curve := seedOf(t, nkeys.CreateCurveKeys)
	userPub := pubOf(t, user)

	badChecksum := bytes.Clone(user)
	if badChecksum[10] == 'A' {
		badChecksum[10] = 'B'
	} else {
		badChecksum[10] = 'A'
	}

	tests := []struct {
		name  string
		input string
		want  error // nil: accepted, with public key userPub
		// nats says whether nats.go's parser (nkeys.ParseDecoratedUserNKey,
		// used by nats.NkeyOptionFromSeed) agrees.
		nats bool
	}{
		{name: "bare", input: string(user), nats: true},
		{name: "trailing newline", input: string(user) + "\n", nats: true},
		{name: "crlf", input: string(user) + "\r\n", nats: true},
		{name: "blank lines around", input: "\n\n" + string(user) + "\n\n", nats: true},
		{name: "indented", input: "\t  " + string(user) + "  \n", nats: false},
		{name: "comment line first", input: "# bot key\n" + string(user) + "\n", nats: true},
		{name: "crlf after comment", input: "# bot key\r\n" + string(user) + "\r\n", nats: true},
		{name: "decorated nkey", input: fmt.Sprintf(decoratedTemplate, user), nats: true},
		{name: "creds file", input: fmt.Sprintf(credsTemplate, user), nats: true},

		{name: "empty", input: "", want: ErrMalformedSeed},
		{name: "white space", input: " \n\t\n", want: ErrMalformedSeed},
		{name: "garbage", input: "hello world\n", want: ErrMalformedSeed},
		{name: "bad checksum", input: string(badChecksum), want: ErrMalformedSeed},
		{name: "truncated", input: string(user[:len(user)-4]), want: ErrMalformedSeed},
		{name: "public key", input: userPub + "\n", want: ErrMalformedSeed},
		{name: "account seed", input: string(account) + "\n", want: ErrNotUserSeed},
		{name: "operator seed", input: string(operator), want: ErrNotUserSeed},
		{name: "server seed", input: string(server), want: ErrNotUserSeed},
		{name: "curve seed", input: string(curve), want: ErrNotUserSeed},
		{name: "decorated account seed", input: fmt.Sprintf(decoratedTemplate, account), want: ErrNotUserSeed},
		{name: "creds with account seed", input: fmt.Sprintf(credsTemplate, account), want: ErrNotUserSeed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := FromSeed([]byte(tt.input))
			natsKP, natsErr := nkeys.ParseDecoratedUserNKey([]byte(tt.input))

			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("FromSeed error = %v, want %v", err, tt.want)
				}
				if natsErr == nil {
					t.Errorf("nats.go accepts input that FromSeed rejects")
				}
				return
			}
			if err != nil {
				t.Fatalf("FromSeed: %v", err)
			}
			if got := id.PublicKey(); got != userPub {
				t.Errorf("PublicKey = %s, want %s", got, userPub)
			}
			seed, err := id.Seed()
			if err != nil {
				t.Fatalf("Seed: %v", err)
			}
			if !bytes.Equal(seed, user) {
				t.Errorf("Seed = %q, want canonical %q", seed, user)
			}
			if tt.nats {
				if natsErr != nil {
					t.Fatalf("nats.go rejects input: %v", natsErr)
				}
				if pub, _ := natsKP.PublicKey(); pub != userPub {
					t.Errorf("nats.go public key = %s, want %s", pub, userPub)
				}
			} else if natsErr == nil {
				t.Errorf("nats.go accepts input, update the table")
			}
		})
	}
}

func TestFromSeedLeavesInputAlone(t *testing.T) {
	user := seedOf(t, nkeys.CreateUser)
	input := append(bytes.Clone(user), '\n')
	id, err := FromSeed(input)
	if err != nil {
		t.Fatalf("FromSeed: %v", err)
	}
	if !bytes.Equal(input[:len(user)], user) {
		t.Fatalf("FromSeed modified its input")
	}
	clear(input)
	if _, err := id.Sign([]byte("test-v1\nx")); err != nil {
		t.Fatalf("Sign after clearing the input: %v", err)
	}
}

func TestGenerateSignVerify(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if !nkeys.IsValidPublicUserKey(id.PublicKey()) {
		t.Fatalf("PublicKey %q is not a user key", id.PublicKey())
	}
	other, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if other.PublicKey() == id.PublicKey() {
		t.Fatalf("two generated identities share a public key")
	}

	msg := []byte("test-v1\nmessage")
	sig, err := id.Sign(msg)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	verifier, err := nkeys.FromPublicKey(id.PublicKey())
	if err != nil {
		t.Fatalf("FromPublicKey: %v", err)
	}
	if err := verifier.Verify(msg, sig); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if err := verifier.Verify([]byte("test-v1\nother"), sig); err == nil {
		t.Errorf("signature verifies for another message")
	}

	kpSig, err := id.KeyPair().Sign(msg)
	if err != nil {
		t.Fatalf("KeyPair().Sign: %v", err)
	}
	if !bytes.Equal(kpSig, sig) {
		t.Errorf("KeyPair().Sign differs from Sign") // Ed25519 is deterministic
	}
}

func TestSeedIsACopy(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	seed, err := id.Seed()
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	want := bytes.Clone(seed)
	clear(seed)
	again, err := id.Seed()
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	if !bytes.Equal(again, want) {
		t.Fatalf("clearing the returned seed changed the identity")
	}
}

func TestStringHidesSeed(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	seed, err := id.Seed()
	if err != nil {
		t.Fatalf("Seed: %v", err)
	}
	for _, verb := range []string{"%v", "%+v", "%s"} {
		got := fmt.Sprintf(verb, id)
		if got != id.PublicKey() {
			t.Errorf("Sprintf(%q) = %q, want the public key", verb, got)
		}
		if bytes.Contains([]byte(got), seed) {
			t.Errorf("Sprintf(%q) shows the seed", verb)
		}
	}
}

func TestWipe(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	pub := id.PublicKey()
	id.Wipe()
	id.Wipe() // idempotent

	if _, err := id.Sign([]byte("test-v1\nx")); !errors.Is(err, ErrWiped) {
		t.Errorf("Sign after Wipe: error = %v, want ErrWiped", err)
	}
	if _, err := id.SignNonce([]byte("ABCDEFGHIJKLMNO")); !errors.Is(err, ErrWiped) {
		t.Errorf("SignNonce after Wipe: error = %v, want ErrWiped", err)
	}
	if _, err := id.KeyPair().Sign([]byte("test-v1\nx")); !errors.Is(err, ErrWiped) {
		t.Errorf("KeyPair().Sign after Wipe: error = %v, want ErrWiped", err)
	}
	if _, err := id.Seed(); !errors.Is(err, ErrWiped) {
		t.Errorf("Seed after Wipe: error = %v, want ErrWiped", err)
	}
	if got := id.PublicKey(); got != pub {
		t.Errorf("PublicKey after Wipe = %q, want %q", got, pub)
	}
	if err := Save(t.TempDir()+"/id.nk", id); !errors.Is(err, ErrWiped) {
		t.Errorf("Save after Wipe: error = %v, want ErrWiped", err)
	}
}

// TestWipeWhileSigning runs under -race: Sign and Wipe may race.
func TestWipeWhileSigning(t *testing.T) {
	id, err := Generate()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	verifier, err := nkeys.FromPublicKey(id.PublicKey())
	if err != nil {
		t.Fatalf("FromPublicKey: %v", err)
	}
	msg := []byte("test-v1\nmessage")

	var wg sync.WaitGroup
	errs := make(chan error, 8*50)
	for range 8 {
		wg.Go(func() {
			for range 50 {
				sig, err := id.Sign(msg)
				switch {
				case errors.Is(err, ErrWiped):
				case err != nil:
					errs <- err
				default:
					if err := verifier.Verify(msg, sig); err != nil {
						errs <- err
					}
				}
			}
		})
	}
	id.Wipe()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Sign during Wipe: %v", err)
	}
	if _, err := id.Sign(msg); !errors.Is(err, ErrWiped) {
		t.Errorf("Sign after Wipe: error = %v, want ErrWiped", err)
	}
}
