package e2e_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
)

// ring is the simplest KeyRing: one encrypted room, one epoch, one owner.
type ring struct {
	key   []byte
	owner string
}

func (r ring) RoomState(string) (e2e.RoomState, error) {
	return e2e.RoomState{Epoch: 1, Since: time.Now(), Owner: r.owner}, nil
}
func (r ring) RoomKey(string, uint64) ([]byte, error) { return r.key, nil }

// IsMember is asked only about cleartext rooms.
func (r ring) IsMember(string, string) bool { return false }

// Bob, the room's owner, seals the room key to Alice's encryption key and
// grants it to her and to himself; Alice checks her grant before she uses
// the key, and Bob's grant, which his frame carries, before she accepts
// the frame.
func Example() {
	alice, err := identity.Generate()
	if err != nil {
		log.Fatal(err)
	}
	bob, err := identity.Generate()
	if err != nil {
		log.Fatal(err)
	}
	const room = "team"

	// The owner seals the room key to Alice's published encryption key
	// and grants it to her.
	aliceEnc, err := e2e.GenerateEncryptionKey()
	if err != nil {
		log.Fatal(err)
	}
	roomKey := e2e.NewRoomKey()
	sealed, err := e2e.SealRoomKey(aliceEnc.PublicKey(), room, 1, alice.PublicKey(), roomKey)
	if err != nil {
		log.Fatal(err)
	}
	aliceGrant, err := e2e.SignGrant(bob, room, 1, alice.PublicKey(), roomKey)
	if err != nil {
		log.Fatal(err)
	}
	aliceRoomKey, err := e2e.OpenRoomKey(aliceEnc, room, 1, alice.PublicKey(), sealed)
	if err != nil {
		log.Fatal(err)
	}
	if err := e2e.VerifyGrant(bob.PublicKey(), room, 1, alice.PublicKey(), aliceRoomKey, aliceGrant); err != nil {
		log.Fatal(err) // a key the owner did not give: never use it
	}

	// Bob seals a frame, which carries his own grant.
	bobGrant, err := e2e.SignGrant(bob, room, 1, bob.PublicKey(), roomKey)
	if err != nil {
		log.Fatal(err)
	}
	s, err := e2e.NewSealer(e2e.SealerConfig{Identity: bob, Room: room, Epoch: 1, RoomKey: roomKey, Grant: bobGrant})
	if err != nil {
		log.Fatal(err)
	}
	_, wire, err := s.Seal(e2e.Message{Payload: []byte("hello, Alice")}, time.Now())
	if err != nil {
		log.Fatal(err)
	}

	// Alice receives it.
	r, err := e2e.NewReceiver(e2e.ReceiverConfig{Keys: ring{key: aliceRoomKey, owner: bob.PublicKey()}})
	if err != nil {
		log.Fatal(err)
	}
	got, err := r.Receive(room, wire, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s from Bob: %v\n", got.Payload, got.Frame.Sender == bob.PublicKey())

	// The same frame again is a replay.
	_, err = r.Receive(room, wire, time.Now())
	fmt.Println(errors.Is(err, e2e.ErrReplay))
	// Output:
	// hello, Alice from Bob: true
	// true
}
