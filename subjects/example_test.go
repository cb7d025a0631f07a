package subjects_test

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/subjects"
)

func ExampleRoom() {
	subject, err := subjects.Room("AAECAwQFBgcICQoLDA0ODw")
	fmt.Println(subject, err)

	// Wildcards and separators never reach a subject.
	_, err = subjects.Room("a.*")
	fmt.Println(err)
	fmt.Println(errors.Is(err, subjects.ErrInvalidRoomID), errors.Is(err, subjects.ErrInvalidToken))
	// Output:
	// unibus.v1.room.AAECAwQFBgcICQoLDA0ODw <nil>
	// invalid room id "a.*": contains '.'
	// true true
}

func ExampleInboxPrefix() {
	// A user key as pasted by a person: lower case, with a newline.
	prefix, err := subjects.InboxPrefix("ucfiry65oqe7dfp5klns2pf2lvzmuzyjx4ozieq36n2iqanub5xvz45l\n")
	fmt.Println(prefix, err)
	// Output:
	// _INBOX.UCFIRY65OQE7DFP5KLNS2PF2LVZMUZYJX4OZIEQ36N2IQANUB5XVZ45L <nil>
}

func ExampleSignRequest() {
	// In a real client the key pair comes from the user's seed file.
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		panic(err)
	}
	body := []byte(`{"room_id":"AAECAwQFBgcICQoLDA0ODw"}`)
	now := time.Now()

	// Client: sign, then send the headers with the request.
	h, err := subjects.SignRequest(kp, subjects.RoomsGet, body, now)
	if err != nil {
		panic(err)
	}

	// Service: verify on the subject the request arrived on, then claim
	// req.Nonce and look req.Pub up before acting.
	req, err := subjects.VerifyRequest(subjects.RoomsGet, h, body, now, subjects.DefaultMaxSkew)
	fmt.Println(req.Pub, err)

	// The same headers on another endpoint do not verify.
	_, err = subjects.VerifyRequest(subjects.RoomsLeave, h, body, now, subjects.DefaultMaxSkew)
	fmt.Println(errors.Is(err, subjects.ErrBadSignature))
	// Output:
	// UCFIRY65OQE7DFP5KLNS2PF2LVZMUZYJX4OZIEQ36N2IQANUB5XVZ45L <nil>
	// true
}
