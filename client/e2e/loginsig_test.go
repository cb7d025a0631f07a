package e2e

import (
	"testing"

	"github.com/unibus/unibus/identity"
)

// TestFrameSigningBytesAreNotLoginNonces: the bytes a sender signs for a
// frame (signedMessage) are never in the login-nonce form
// (identity.IsNonceForm), for sealed and cleartext frames of every type,
// empty payloads included; so identity.SignNonce refuses them and a
// server that sends them as its login nonce gets no frame signature.
func TestFrameSigningBytesAreNotLoginNonces(t *testing.T) {
	id := newIdentity(t)
	sealed := newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: 1, RoomKey: fixedRoomKey()})
	plain := newSealer(t, SealerConfig{Identity: id, Room: testRoom, Cleartext: true})
	parent, _, err := sealed.Seal(Message{Payload: []byte("parent")}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		s    *Sealer
		m    Message
	}{
		{"sealed message", sealed, Message{Payload: []byte("hello")}},
		{"sealed empty message", sealed, Message{}},
		{"sealed reply", sealed, Message{Thread: parent.ID(), ReplyTo: parent.ID(), Payload: []byte("on it")}},
		{"sealed reaction", sealed, Message{Type: TypeReact, ReplyTo: parent.ID(), Payload: []byte("👍")}},
		{"cleartext message", plain, Message{Payload: []byte("AAAAAAAAAAAAAAA")}},
		{"cleartext empty message", plain, Message{}},
		{"cleartext reaction", plain, Message{Type: TypeReact, ReplyTo: parent.ID(), Payload: []byte("x")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _, err := tc.s.Seal(tc.m, testNow)
			if err != nil {
				t.Fatalf("seal: %v", err)
			}
			msg := f.signedMessage()
			if identity.IsNonceForm(msg) {
				t.Fatalf("frame signing bytes %q are in the login-nonce form", msg)
			}
			if _, err := id.SignNonce(msg); err == nil {
				t.Fatalf("SignNonce signed the frame signing bytes %q", msg)
			}
		})
	}
}
