package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// TestGrantFormatSpec rebuilds the signed bytes of a key grant from the
// package documentation, independently of grantMessage, and checks the
// grant against them with crypto/ed25519.
func TestGrantFormatSpec(t *testing.T) {
	owner := fixedOwner(t)
	member := fixedIdentity(t, 0x01).PublicKey()
	grant := grantFor(t, owner, testRoom, 7, member, fixedRoomKey())
	if len(grant) != GrantSize || GrantSize != subjects.GrantLen {
		t.Fatalf("grant of %d bytes, want %d (subjects.GrantLen %d)", len(grant), GrantSize, subjects.GrantLen)
	}

	commitment := sha256.Sum256(append([]byte("unibus-key-commitment-v1\n"), fixedRoomKey()...))
	if got := KeyCommitment(fixedRoomKey()); got != commitment {
		t.Fatalf("KeyCommitment = %x, want %x", got, commitment)
	}
	var msg []byte
	msg = append(msg, "unibus-key-grant-v1\n"...)
	msg = append(msg, byte(len(testRoom)))
	msg = append(msg, testRoom...)
	msg = append(msg, byte(len(member)))
	msg = append(msg, member...)
	msg = binary.BigEndian.AppendUint64(msg, 7)
	msg = append(msg, commitment[:]...)

	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(owner.PublicKey()))
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(ed25519.PublicKey(raw), msg, grant) {
		t.Fatal("the grant does not verify over the documented bytes")
	}
	// Ed25519 is deterministic: the same grant every time.
	if again := grantFor(t, owner, testRoom, 7, member, fixedRoomKey()); !bytes.Equal(again, grant) {
		t.Fatal("SignGrant is not deterministic")
	}
}

func TestGrantRoundTrip(t *testing.T) {
	owner, member := newIdentity(t), newIdentity(t)
	key := NewRoomKey()
	grant := grantFor(t, owner, testRoom, 3, member.PublicKey(), key)
	if err := VerifyGrant(owner.PublicKey(), testRoom, 3, member.PublicKey(), key, grant); err != nil {
		t.Fatalf("VerifyGrant of a genuine grant: %v", err)
	}
	// A user key is normalized on both sides.
	if err := VerifyGrant(strings.ToLower(owner.PublicKey()), testRoom, 3, " "+member.PublicKey(), key, grant); err != nil {
		t.Fatalf("VerifyGrant with keys spelled otherwise: %v", err)
	}

	other := newIdentity(t)
	flipped := bytes.Clone(grant)
	flipped[GrantSize-1] ^= 0x40
	tests := []struct {
		name   string
		owner  string
		room   string
		epoch  uint64
		member string
		key    []byte
		grant  []byte
		cause  error
	}{
		{"another owner", other.PublicKey(), testRoom, 3, member.PublicKey(), key, grant, nil},
		{"another room", owner.PublicKey(), "other-room", 3, member.PublicKey(), key, grant, nil},
		{"another epoch", owner.PublicKey(), testRoom, 4, member.PublicKey(), key, grant, nil},
		{"another member", owner.PublicKey(), testRoom, 3, other.PublicKey(), key, grant, nil},
		{"another room key", owner.PublicKey(), testRoom, 3, member.PublicKey(), NewRoomKey(), grant, nil},
		{"flipped bit", owner.PublicKey(), testRoom, 3, member.PublicKey(), key, flipped, nil},
		{"no grant", owner.PublicKey(), testRoom, 3, member.PublicKey(), key, nil, nil},
		{"short grant", owner.PublicKey(), testRoom, 3, member.PublicKey(), key, grant[:GrantSize-1], nil},
		{"long grant", owner.PublicKey(), testRoom, 3, member.PublicKey(), key, append(bytes.Clone(grant), 0), nil},
		{"epoch 0", owner.PublicKey(), testRoom, 0, member.PublicKey(), key, grant, ErrInvalidRoomKey},
		{"short room key", owner.PublicKey(), testRoom, 3, member.PublicKey(), key[:31], grant, ErrInvalidRoomKey},
		{"invalid room", owner.PublicKey(), "a.b", 3, member.PublicKey(), key, grant, subjects.ErrInvalidRoomID},
		{"invalid member", owner.PublicKey(), testRoom, 3, "UBOB", key, grant, subjects.ErrInvalidUserKey},
		{"invalid owner", "", testRoom, 3, member.PublicKey(), key, grant, subjects.ErrInvalidUserKey},
		{"owner is not a user key", strings.Replace(owner.PublicKey(), "U", "N", 1), testRoom, 3, member.PublicKey(), key, grant, subjects.ErrInvalidUserKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyGrant(tt.owner, tt.room, tt.epoch, tt.member, tt.key, tt.grant)
			if !errors.Is(err, ErrBadGrant) {
				t.Fatalf("VerifyGrant = %v, want ErrBadGrant", err)
			}
			if tt.cause != nil && !errors.Is(err, tt.cause) {
				t.Fatalf("VerifyGrant = %v, want it to match %v too", err, tt.cause)
			}
		})
	}
}

func TestSignGrantErrors(t *testing.T) {
	owner, member := newIdentity(t), newIdentity(t).PublicKey()
	for name, tc := range map[string]struct {
		owner  *identity.Identity
		room   string
		epoch  uint64
		member string
		key    []byte
		want   error
	}{
		"no owner":       {nil, testRoom, 1, member, fixedRoomKey(), ErrConfigValidation},
		"epoch 0":        {owner, testRoom, 0, member, fixedRoomKey(), ErrInvalidRoomKey},
		"short room key": {owner, testRoom, 1, member, fixedRoomKey()[:16], ErrInvalidRoomKey},
		"invalid room":   {owner, "", 1, member, fixedRoomKey(), subjects.ErrInvalidRoomID},
		"invalid member": {owner, testRoom, 1, "nobody", fixedRoomKey(), subjects.ErrInvalidUserKey},
	} {
		t.Run(name, func(t *testing.T) {
			if g, err := SignGrant(tc.owner, tc.room, tc.epoch, tc.member, tc.key); !errors.Is(err, tc.want) || g != nil {
				t.Fatalf("SignGrant = %x, %v; want %v", g, err, tc.want)
			}
		})
	}
}

// TestGrantMessageUnambiguous: the lengths frame the fields, so moving a
// byte from the room to the member (or any split of the same bytes) gives
// other signed bytes.
func TestGrantMessageUnambiguous(t *testing.T) {
	var c [CommitmentSize]byte
	a := grantMessage("ab", "c", 1, c)
	b := grantMessage("a", "bc", 1, c)
	if bytes.Equal(a, b) {
		t.Fatal("two splits of the same bytes give the same grant message")
	}
	// The commitment hides the key: it differs for keys one bit apart and
	// repeats no key byte.
	k := fixedRoomKey()
	k2 := bytes.Clone(k)
	k2[0] ^= 1
	c1, c2 := KeyCommitment(k), KeyCommitment(k2)
	if c1 == c2 {
		t.Fatal("keys one bit apart have the same commitment")
	}
	if bytes.Contains(c1[:], k[:8]) {
		t.Fatal("the commitment repeats the key")
	}
}

// TestGrantSigningBytesAreNotLoginNonces: the bytes an owner signs for a
// grant are never in the login-nonce form, so identity.Sign signs them and
// identity.SignNonce refuses them; and they are in no other signed message
// space (every application domain is distinct and none is a prefix of
// another).
func TestGrantSigningBytesAreNotLoginNonces(t *testing.T) {
	id := newIdentity(t)
	msg := grantMessage(testRoom, id.PublicKey(), 1, KeyCommitment(fixedRoomKey()))
	if identity.IsNonceForm(msg) {
		t.Fatalf("grant signing bytes %q are in the login-nonce form", msg)
	}
	if _, err := id.SignNonce(msg); err == nil {
		t.Fatal("SignNonce signed the grant signing bytes")
	}
	domains := []string{grantDomain, sigDomain, "unibus-req-v1\n", "unibus-enckey-v1\n", "unibus-owner-v1\n"}
	for i, a := range domains {
		for j, b := range domains {
			if i != j && strings.HasPrefix(a, b) {
				t.Errorf("domain %q starts with domain %q", a, b)
			}
		}
	}
}

// FuzzVerifyGrant feeds arbitrary contexts and grant bytes to VerifyGrant.
// It must never panic, every error must match ErrBadGrant, and only the
// genuine grant verifies, for the context it was made for.
func FuzzVerifyGrant(f *testing.F) {
	owner := fixedOwner(f)
	member := fixedIdentity(f, 0x01).PublicKey()
	grant := grantFor(f, owner, testRoom, 7, member, fixedRoomKey())
	f.Add(owner.PublicKey(), testRoom, uint64(7), member, fixedRoomKey(), grant)
	f.Add(owner.PublicKey(), testRoom, uint64(8), member, fixedRoomKey(), grant)
	f.Add(member, testRoom, uint64(7), owner.PublicKey(), fixedRoomKey(), grant)
	f.Add(owner.PublicKey(), testRoom+"x", uint64(7), member, fixedRoomKey(), grant)
	f.Add(owner.PublicKey(), testRoom, uint64(7), member, fixedRoomKey(), grant[:63])
	f.Add(owner.PublicKey(), testRoom, uint64(0), member, []byte{}, []byte{})
	f.Add("", "", uint64(1), "", []byte("k"), make([]byte, GrantSize))

	f.Fuzz(func(t *testing.T, ownerKey, room string, epoch uint64, who string, key, g []byte) {
		err := VerifyGrant(ownerKey, room, epoch, who, key, g)
		if err != nil {
			if !errors.Is(err, ErrBadGrant) {
				t.Fatalf("VerifyGrant error %v does not match ErrBadGrant", err)
			}
			return
		}
		o, oerr := subjects.NormalizeUserKey(ownerKey)
		m, merr := subjects.NormalizeUserKey(who)
		if oerr != nil || merr != nil || o != owner.PublicKey() || m != member || room != testRoom || epoch != 7 ||
			!bytes.Equal(key, fixedRoomKey()) || !bytes.Equal(g, grant) {
			t.Fatalf("a grant verifies for owner %q room %q epoch %d member %q key %x grant %x", ownerKey, room, epoch, who, key, g)
		}
	})
}
