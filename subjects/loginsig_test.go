package subjects_test

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// TestSigningBytesAreNotLoginNonces: every application message this
// package defines for an identity to sign is outside the login-nonce form
// (identity.IsNonceForm), so identity.Sign signs it and
// identity.SignNonce refuses it: a server that sends one of them as its
// login nonce gets no signature. The cases take the extremes each input
// allows (empty and long bodies, every subject, sealed keys or none).
func TestSigningBytesAreNotLoginNonces(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	pub := id.PublicKey()
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	nonce := "AAAAAAAAAAAAAAAAAAAAAA"
	roomID, _ := subjects.NewRoomID(pub, subjects.ModeE2E)
	grant := bytes.Repeat([]byte{9}, subjects.GrantLen)
	owner := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	type tc struct {
		name string
		msg  []byte
	}
	var cases []tc
	for _, subject := range []string{
		subjects.UsersAdd, subjects.UsersGet, subjects.UsersList, subjects.UsersRevoke, subjects.UsersSetKey,
		subjects.RoomsCreate, subjects.RoomsGet, subjects.RoomsInvite, subjects.RoomsRemove, subjects.RoomsLeave,
		subjects.RoomsMembers, subjects.RoomsMine, subjects.RoomsRekey, subjects.RoomsKey,
		subjects.BlobsPut, subjects.BlobsGet,
	} {
		cases = append(cases,
			tc{"request " + subject + " empty body", subjects.CanonicalRequest(subject, ts, nonce, nil)},
			tc{"request " + subject + " with body", subjects.CanonicalRequest(subject, ts, nonce, []byte(`{"pub":"`+pub+`"}`))},
		)
	}
	cases = append(cases,
		tc{"request with empty fields", subjects.CanonicalRequest("", "", "", nil)},
		tc{"encryption-key binding", subjects.EncKeyBindingMessage(pub, bytes.Repeat([]byte{7}, 1216), 1, time.Now())},
		tc{"encryption-key binding with empty fields", subjects.EncKeyBindingMessage("", nil, 0, time.Time{})},
		tc{"owner invite, cleartext", owner((&subjects.InviteRequest{RoomID: roomID, Pub: pub}).SigningBytes())},
		tc{"owner invite, sealed", owner((&subjects.InviteRequest{RoomID: roomID, Pub: pub, Epoch: 3, SealedKey: []byte("sealed"), Grant: grant}).SigningBytes())},
		tc{"owner remove", owner((&subjects.RemoveRequest{RoomID: roomID, Pub: pub}).SigningBytes())},
		tc{"owner remove with rekey", owner((&subjects.RemoveRequest{RoomID: roomID, Pub: pub,
			Rekey: &subjects.RekeyBundle{FromEpoch: 1, ToEpoch: 2, Keys: map[string][]byte{pub: []byte("k")}, Grants: map[string][]byte{pub: grant}}}).SigningBytes())},
		tc{"owner rekey", owner((&subjects.RekeyRequest{RoomID: roomID, FromEpoch: 1, ToEpoch: 2, Keys: map[string][]byte{pub: []byte("k")}, Grants: map[string][]byte{pub: grant}}).SigningBytes())},
		tc{"owner rekey, empty", owner((&subjects.RekeyRequest{}).SigningBytes())},
	)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if identity.IsNonceForm(c.msg) {
				t.Fatalf("%q is in the login-nonce form", c.msg)
			}
			if _, err := id.SignNonce(c.msg); err == nil {
				t.Fatalf("SignNonce signed the application message %q", c.msg)
			}
			if _, err := id.Sign(c.msg); err != nil {
				t.Fatalf("Sign refused the application message %q: %v", c.msg, err)
			}
		})
	}
}

// TestSignersRefuseLoginNonces: the signing helpers given an identity's
// key pair sign through identity.Sign, which never signs in the
// login-nonce space, so none of them can be turned into a nonce signer.
func TestSignersRefuseLoginNonces(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("ABCDEFGHIJKLMNO")
	if _, err := id.KeyPair().Sign(nonce); err == nil {
		t.Fatal("the identity's key pair signed a login nonce")
	}
	// The helpers themselves work with the key pair.
	h, err := subjects.SignRequest(id.KeyPair(), subjects.UsersSetKey, []byte("{}"), time.Now())
	if err != nil {
		t.Fatalf("SignRequest: %v", err)
	}
	if _, err := subjects.VerifyRequest(subjects.UsersSetKey, h, []byte("{}"), time.Now(), 0); err != nil {
		t.Fatalf("VerifyRequest: %v", err)
	}
	issued := time.Now()
	sig, err := subjects.SignEncKeyBinding(id.KeyPair(), []byte("key"), 1, issued)
	if err != nil {
		t.Fatalf("SignEncKeyBinding: %v", err)
	}
	if err := subjects.VerifyEncKeyBinding(id.PublicKey(), []byte("key"), 1, issued, sig); err != nil {
		t.Fatalf("VerifyEncKeyBinding: %v", err)
	}
}
