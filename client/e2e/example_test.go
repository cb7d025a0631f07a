package e2e_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
)

// ring is the simplest KeyRing: one room, one epoch, fixed members.
type ring struct {
	key     []byte
	members map[string]bool
}

func (r ring) RoomState(string) (e2e.RoomState, error) {
	return e2e.RoomState{Epoch: 1, Since: time.Now()}, nil
}
func (r ring) RoomKey(string, uint64) ([]byte, error) { return r.key, nil }
func (r ring) IsMember(_, sender string) bool         { return r.members[sender] }

// Alice's encryption key receives the room key; Bob seals a frame that
// Alice receives.
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

	// The owner seals the room key to Alice's published encryption key.
	aliceEnc, err := e2e.GenerateEncryptionKey()
	if err != nil {
		log.Fatal(err)
	}
	roomKey := e2e.NewRoomKey()
	sealed, err := e2e.SealRoomKey(aliceEnc.PublicKey(), room, 1, alice.PublicKey(), roomKey)
	if err != nil {
		log.Fatal(err)
	}
	aliceRoomKey, err := e2e.OpenRoomKey(aliceEnc, room, 1, alice.PublicKey(), sealed)
	if err != nil {
		log.Fatal(err)
	}

	// Bob seals a frame.
	s, err := e2e.NewSealer(e2e.SealerConfig{Identity: bob, Room: room, Epoch: 1, RoomKey: roomKey})
	if err != nil {
		log.Fatal(err)
	}
	_, wire, err := s.Seal(e2e.Message{Payload: []byte("hello, Alice")}, time.Now())
	if err != nil {
		log.Fatal(err)
	}

	// Alice receives it.
	r, err := e2e.NewReceiver(e2e.ReceiverConfig{Keys: ring{
		key:     aliceRoomKey,
		members: map[string]bool{alice.PublicKey(): true, bob.PublicKey(): true},
	}})
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
