package e2e

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

func TestRoomKeySealOpen(t *testing.T) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	other, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	alice := newIdentity(t).PublicKey()
	bob := newIdentity(t).PublicKey()
	roomKey := NewRoomKey()
	if len(roomKey) != RoomKeySize {
		t.Fatalf("NewRoomKey is %d bytes, want %d", len(roomKey), RoomKeySize)
	}
	if bytes.Equal(roomKey, NewRoomKey()) {
		t.Fatal("two room keys are equal")
	}

	sealed, err := SealRoomKey(k.PublicKey(), testRoom, 3, alice, roomKey)
	if err != nil {
		t.Fatalf("SealRoomKey: %v", err)
	}
	if len(sealed) != SealedRoomKeySize {
		t.Errorf("sealed key is %d bytes, want %d", len(sealed), SealedRoomKeySize)
	}
	again, err := SealRoomKey(k.PublicKey(), testRoom, 3, alice, roomKey)
	if err != nil {
		t.Fatalf("SealRoomKey: %v", err)
	}
	if bytes.Equal(sealed, again) {
		t.Error("sealing twice gave the same bytes (no fresh encapsulation)")
	}

	got, err := OpenRoomKey(k, testRoom, 3, alice, sealed)
	if err != nil {
		t.Fatalf("OpenRoomKey: %v", err)
	}
	if !bytes.Equal(got, roomKey) {
		t.Fatalf("OpenRoomKey = %x, want %x", got, roomKey)
	}
	// The recipient is normalized on both sides.
	if _, err := OpenRoomKey(k, testRoom, 3, " "+alice+"\n", sealed); err != nil {
		t.Errorf("OpenRoomKey with an untrimmed recipient: %v", err)
	}

	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	tamperedEnc := bytes.Clone(sealed)
	tamperedEnc[0] ^= 1
	tests := []struct {
		name      string
		key       *EncryptionKey
		room      string
		epoch     uint64
		recipient string
		sealed    []byte
		want      error
	}{
		{"other room", k, "other-room", 3, alice, sealed, ErrDecrypt},
		{"other epoch", k, testRoom, 4, alice, sealed, ErrDecrypt},
		{"previous epoch", k, testRoom, 2, alice, sealed, ErrDecrypt},
		{"other recipient", k, testRoom, 3, bob, sealed, ErrDecrypt},
		{"other private key", other, testRoom, 3, alice, sealed, ErrDecrypt},
		{"tampered ciphertext", k, testRoom, 3, alice, tampered, ErrDecrypt},
		{"tampered encapsulation", k, testRoom, 3, alice, tamperedEnc, ErrDecrypt},
		{"truncated", k, testRoom, 3, alice, sealed[:len(sealed)-1], ErrDecrypt},
		{"empty", k, testRoom, 3, alice, nil, ErrDecrypt},
		{"epoch 0", k, testRoom, 0, alice, sealed, ErrInvalidRoomKey},
		{"bad room", k, "a.b", 3, alice, sealed, subjects.ErrInvalidRoomID},
		{"bad recipient", k, testRoom, 3, "Ubogus", sealed, subjects.ErrInvalidUserKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := OpenRoomKey(tt.key, tt.room, tt.epoch, tt.recipient, tt.sealed)
			if !errors.Is(err, tt.want) {
				t.Fatalf("OpenRoomKey = %x, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestSealRoomKeyErrors(t *testing.T) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	pub := newIdentity(t).PublicKey()
	tests := []struct {
		name    string
		encPub  []byte
		room    string
		epoch   uint64
		who     string
		roomKey []byte
		want    error
	}{
		{"short room key", k.PublicKey(), testRoom, 1, pub, make([]byte, 31), ErrInvalidRoomKey},
		{"long room key", k.PublicKey(), testRoom, 1, pub, make([]byte, 33), ErrInvalidRoomKey},
		{"epoch 0", k.PublicKey(), testRoom, 0, pub, NewRoomKey(), ErrInvalidRoomKey},
		{"bad room", k.PublicKey(), "", 1, pub, NewRoomKey(), subjects.ErrInvalidRoomID},
		{"seed as recipient", k.PublicKey(), testRoom, 1, "SUAAAA", NewRoomKey(), subjects.ErrInvalidUserKey},
		{"bad public key", k.PublicKey()[:100], testRoom, 1, pub, NewRoomKey(), ErrInvalidEncryptionKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := SealRoomKey(tt.encPub, tt.room, tt.epoch, tt.who, tt.roomKey); !errors.Is(err, tt.want) {
				t.Fatalf("SealRoomKey = %v, want %v", err, tt.want)
			}
		})
	}
}

// member is a user with an identity and a bound encryption key.
type member struct {
	id  *identity.Identity
	pub string
	enc *EncryptionKey
	rcp Recipient
}

func newMember(t testing.TB) member {
	t.Helper()
	id := newIdentity(t)
	k, err := GenerateEncryptionKey()
	if err != nil {
		t.Fatalf("GenerateEncryptionKey: %v", err)
	}
	issued := time.Unix(1767225600, 0)
	sig, err := subjects.SignEncKeyBinding(id.KeyPair(), k.PublicKey(), 1, issued)
	if err != nil {
		t.Fatalf("SignEncKeyBinding: %v", err)
	}
	return member{id: id, pub: id.PublicKey(), enc: k, rcp: Recipient{Pub: id.PublicKey(), EncKey: k.PublicKey(), EncKeySig: sig, EncKeyVersion: 1, EncKeyIssuedAt: issued}}
}

func TestSealRoomKeys(t *testing.T) {
	members := make([]member, 5)
	recipients := make([]Recipient, len(members))
	for i := range members {
		members[i] = newMember(t)
		recipients[i] = members[i].rcp
	}
	roomKey := NewRoomKey()
	sealed, err := SealRoomKeys(testRoom, 9, roomKey, recipients)
	if err != nil {
		t.Fatalf("SealRoomKeys: %v", err)
	}
	if len(sealed) != len(members) {
		t.Fatalf("SealRoomKeys returned %d keys, want %d", len(sealed), len(members))
	}
	for _, m := range members {
		got, err := OpenRoomKey(m.enc, testRoom, 9, m.pub, sealed[m.pub])
		if err != nil {
			t.Fatalf("member %s: OpenRoomKey: %v", m.pub, err)
		}
		if !bytes.Equal(got, roomKey) {
			t.Fatalf("member %s opened another key", m.pub)
		}
	}
	// A key sealed to one member does not open for another.
	if _, err := OpenRoomKey(members[1].enc, testRoom, 9, members[1].pub, sealed[members[0].pub]); !errors.Is(err, ErrDecrypt) {
		t.Errorf("member 1 opening member 0's key = %v, want ErrDecrypt", err)
	}
}

func TestSealRoomKeysErrors(t *testing.T) {
	a, b := newMember(t), newMember(t)
	swapped := b.rcp
	swapped.EncKey = a.rcp.EncKey // b's signature does not bind a's key
	unsigned := b.rcp
	unsigned.EncKeySig = nil
	badKey := b.rcp
	badKey.EncKey = []byte("short")
	sig, err := subjects.SignEncKeyBinding(b.id.KeyPair(), badKey.EncKey, badKey.EncKeyVersion, badKey.EncKeyIssuedAt)
	if err != nil {
		t.Fatalf("SignEncKeyBinding: %v", err)
	}
	badKey.EncKeySig = sig // a valid binding of an invalid key
	tests := []struct {
		name       string
		recipients []Recipient
		want       []error
	}{
		{"substituted key", []Recipient{a.rcp, swapped}, []error{ErrBadSignature, subjects.ErrBadSignature}},
		{"missing binding", []Recipient{a.rcp, unsigned}, []error{ErrBadSignature, subjects.ErrMissingSignature}},
		{"invalid key", []Recipient{a.rcp, badKey}, []error{ErrInvalidEncryptionKey}},
		{"invalid user", []Recipient{{Pub: "nope"}}, []error{subjects.ErrInvalidUserKey}},
		{"duplicate", []Recipient{a.rcp, b.rcp, a.rcp}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SealRoomKeys(testRoom, 2, NewRoomKey(), tt.recipients)
			if err == nil {
				t.Fatalf("SealRoomKeys = %d keys, want an error", len(got))
			}
			if got != nil {
				t.Errorf("SealRoomKeys returned keys with an error")
			}
			for _, want := range tt.want {
				if !errors.Is(err, want) {
					t.Errorf("SealRoomKeys error %q does not match %v", err, want)
				}
			}
		})
	}
	if _, err := SealRoomKeys(testRoom, 0, NewRoomKey(), []Recipient{a.rcp}); !errors.Is(err, ErrInvalidRoomKey) {
		t.Errorf("SealRoomKeys at epoch 0 = %v, want ErrInvalidRoomKey", err)
	}
	if _, err := SealRoomKeys(testRoom, 1, []byte("short"), []Recipient{a.rcp}); !errors.Is(err, ErrInvalidRoomKey) {
		t.Errorf("SealRoomKeys with a short key = %v, want ErrInvalidRoomKey", err)
	}
}
