package e2e

import (
	"bytes"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unibus/unibus/identity"
)

// roomFixture is an encrypted room of the fixed owner with two members,
// alice and bob, at epoch 5 (keys for epochs 3 to 6 exist), seen by a
// receiver whose epoch 5 began at testNow. The owner granted every epoch's
// key to alice and bob (and cleartext members are alice and bob).
type roomFixture struct {
	ring       *testRing
	recv       *Receiver
	owner      *identity.Identity
	alice, bob *identity.Identity
	keys       map[uint64][]byte
}

func newRoomFixture(t *testing.T) *roomFixture {
	t.Helper()
	owner := fixedOwner(t)
	fx := &roomFixture{ring: newTestRing(owner.PublicKey()), owner: owner, alice: newIdentity(t), bob: newIdentity(t), keys: make(map[uint64][]byte)}
	fx.ring.setState(testRoom, RoomState{Epoch: 5, Since: testNow})
	for ep := uint64(3); ep <= 6; ep++ {
		fx.keys[ep] = NewRoomKey()
		if ep <= 5 {
			fx.ring.setKey(testRoom, ep, fx.keys[ep])
		}
	}
	fx.ring.addMember(testRoom, fx.alice.PublicKey())
	fx.ring.addMember(testRoom, fx.bob.PublicKey())
	fx.recv = newReceiver(t, fx.ring)
	return fx
}

// sealer returns id's sealer at epoch, with the owner's grant to id.
func (fx *roomFixture) sealer(t *testing.T, id *identity.Identity, epoch uint64) *Sealer {
	t.Helper()
	return newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: epoch, RoomKey: fx.keys[epoch]})
}

// sealerWithGrant returns id's sealer at epoch whose frames carry grant.
func (fx *roomFixture) sealerWithGrant(t *testing.T, id *identity.Identity, epoch uint64, grant []byte) *Sealer {
	t.Helper()
	return newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: epoch, RoomKey: fx.keys[epoch], Grant: grant})
}

func TestReceiverAccepts(t *testing.T) {
	fx := newRoomFixture(t)
	s := fx.sealer(t, fx.alice, 5)
	f, wire := seal(t, s, Message{Payload: []byte("hello bob")}, testNow)

	got, err := fx.recv.Receive(testRoom, wire, testNow.Add(time.Minute))
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if string(got.Payload) != "hello bob" {
		t.Errorf("payload = %q", got.Payload)
	}
	if got.ID != f.ID() || got.Frame.Sender != fx.alice.PublicKey() || got.Frame.Seq != f.Seq {
		t.Errorf("Received = %+v, want the sealed frame and its ID %s", got, f.ID())
	}

	// A reply in a thread carries the references.
	reply, rwire := seal(t, fx.sealer(t, fx.bob, 5), Message{Thread: f.ID(), ReplyTo: f.ID(), Payload: []byte("hi")}, testNow)
	got, err = fx.recv.Receive(testRoom, rwire, testNow)
	if err != nil {
		t.Fatalf("Receive reply: %v", err)
	}
	if got.Frame.Thr != f.ID() || got.Frame.Re != f.ID() || got.ID != reply.ID() {
		t.Errorf("reply = %+v", got.Frame)
	}
}

func TestReceiverReplay(t *testing.T) {
	fx := newRoomFixture(t)
	s := fx.sealer(t, fx.alice, 5)
	_, first := seal(t, s, Message{Payload: []byte("one")}, testNow)
	if _, err := fx.recv.Receive(testRoom, first, testNow); err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if _, err := fx.recv.Receive(testRoom, first, testNow); !errors.Is(err, ErrReplay) {
		t.Fatalf("Receive of the same frame again = %v, want ErrReplay", err)
	}

	// A frame sealed before 1024 others arrives after them: out of the
	// window.
	_, late := seal(t, s, Message{Payload: []byte("late")}, testNow)
	for range ReplayWindowSize {
		_, w := seal(t, s, Message{}, testNow)
		if _, err := fx.recv.Receive(testRoom, w, testNow); err != nil {
			t.Fatalf("Receive: %v", err)
		}
	}
	if _, err := fx.recv.Receive(testRoom, late, testNow); !errors.Is(err, ErrReplay) {
		t.Fatalf("Receive of a frame 1024 behind = %v, want ErrReplay", err)
	}

	// Concurrent copies of one frame: exactly one is accepted.
	_, dup := seal(t, s, Message{Payload: []byte("dup")}, testNow)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := fx.recv.Receive(testRoom, dup, testNow); err == nil {
				ok.Add(1)
			} else if !errors.Is(err, ErrReplay) {
				t.Errorf("Receive: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Fatalf("%d concurrent copies accepted, want 1", ok.Load())
	}
}

func TestReceiverEpochs(t *testing.T) {
	tests := []struct {
		name  string
		epoch uint64
		at    time.Duration // after the current epoch began
		want  error
	}{
		{"current", 5, 0, nil},
		{"current much later", 5, 24 * time.Hour, nil},
		{"previous within grace", 4, 30 * time.Second, nil},
		{"previous just before grace ends", 4, time.Minute - time.Nanosecond, nil},
		{"previous when grace ends", 4, time.Minute, ErrStaleEpoch},
		{"previous after grace", 4, time.Hour, ErrStaleEpoch},
		{"two back", 3, 0, ErrStaleEpoch},
		{"next", 6, 0, ErrFutureEpoch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newRoomFixture(t)
			// Sealed when received: only the epoch decides.
			_, wire := seal(t, fx.sealer(t, fx.alice, tt.epoch), Message{Payload: []byte("x")}, testNow.Add(tt.at))
			_, err := fx.recv.Receive(testRoom, wire, testNow.Add(tt.at))
			if tt.want == nil && err != nil {
				t.Fatalf("Receive = %v, want nil", err)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Receive = %v, want %v", err, tt.want)
			}
			if tt.want != nil && fx.ring.keyCalls.Load() != 0 {
				t.Errorf("a rejected frame fetched %d room keys", fx.ring.keyCalls.Load())
			}
		})
	}

	// A receiver that catches up with a rekey accepts the frame it refused
	// as future: its sequence number was not consumed.
	fx := newRoomFixture(t)
	_, wire := seal(t, fx.sealer(t, fx.alice, 6), Message{Payload: []byte("after rekey")}, testNow)
	if _, err := fx.recv.Receive(testRoom, wire, testNow); !errors.Is(err, ErrFutureEpoch) {
		t.Fatalf("Receive = %v, want ErrFutureEpoch", err)
	}
	fx.ring.setKey(testRoom, 6, fx.keys[6])
	fx.ring.setState(testRoom, RoomState{Epoch: 6, Since: testNow.Add(time.Second)})
	if got, err := fx.recv.Receive(testRoom, wire, testNow.Add(time.Second)); err != nil || string(got.Payload) != "after rekey" {
		t.Fatalf("Receive after catching up = %q, %v", got.Payload, err)
	}

	// The zero Since accepts no previous-epoch frame.
	fx = newRoomFixture(t)
	fx.ring.setState(testRoom, RoomState{Epoch: 5})
	_, wire = seal(t, fx.sealer(t, fx.alice, 4), Message{}, testNow)
	if _, err := fx.recv.Receive(testRoom, wire, testNow); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("Receive with zero Since = %v, want ErrStaleEpoch", err)
	}
}

func TestReceiverRejects(t *testing.T) {
	fx := newRoomFixture(t)
	good, _ := seal(t, fx.sealer(t, fx.alice, 5), Message{Payload: []byte("x")}, testNow)
	future, _ := seal(t, newSealer(t, SealerConfig{Identity: fx.alice, Room: testRoom, Epoch: 1 << 60, RoomKey: NewRoomKey()}), Message{Payload: []byte("x")}, testNow)
	future.Sig = bytes.Clone(future.Sig)
	future.Sig[0] ^= 1
	noGrant := good
	noGrant.Grant = nil
	old, _ := seal(t, fx.sealer(t, fx.alice, 5), Message{Payload: []byte("x")}, testNow.Add(-DefaultMaxFrameAge-time.Millisecond))
	ahead, _ := seal(t, fx.sealer(t, fx.alice, 5), Message{Payload: []byte("x")}, testNow.Add(DefaultMaxClockSkew+time.Millisecond))
	clearSealer := newSealer(t, SealerConfig{Identity: fx.alice, Room: testRoom, Cleartext: true})
	_, clearWire := seal(t, clearSealer, Message{Payload: []byte("clear")}, testNow)
	otherRoom := newSealer(t, SealerConfig{Identity: fx.alice, Room: "other-room", Epoch: 5, RoomKey: fx.keys[5]})
	_, otherWire := seal(t, otherRoom, Message{}, testNow)

	forged := good
	forged.Sig = bytes.Clone(good.Sig)
	forged.Sig[10] ^= 1
	garbageCT := good
	garbageCT.CT = bytes.Repeat([]byte{0xaa}, len(good.CT))
	impersonated := good
	impersonated.Sender = fx.bob.PublicKey()

	tests := []struct {
		name string
		room string
		wire []byte
		want error
	}{
		{"garbage", testRoom, []byte("garbage"), ErrMalformedFrame},
		{"no key grant", testRoom, mustEncode(t, noGrant), ErrBadGrant},
		{"bad signature", testRoom, mustEncode(t, forged), ErrBadSignature},
		{"future epoch, bad signature", testRoom, mustEncode(t, future), ErrBadSignature},
		{"older than the maximum age", testRoom, mustEncode(t, old), ErrFrameAge},
		{"too far in the future", testRoom, mustEncode(t, ahead), ErrFrameAge},
		{"garbage ciphertext, bad signature", testRoom, mustEncode(t, garbageCT), ErrBadSignature},
		{"member impersonating another", testRoom, mustEncode(t, impersonated), ErrBadSignature},
		{"cleartext frame in an encrypted room", testRoom, clearWire, ErrModeMismatch},
		{"frame of another room", testRoom, otherWire, ErrWrongRoom},
		{"unknown room", "other-room", otherWire, nil}, // the ring's error
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fx.ring.keyCalls.Load()
			got, err := fx.recv.Receive(tt.room, tt.wire, testNow)
			if err == nil {
				t.Fatalf("Receive = %+v, want an error", got)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Receive = %v, want %v", err, tt.want)
			}
			if errors.Is(err, ErrDecrypt) {
				t.Fatalf("Receive = %v: decryption was attempted", err)
			}
			if n := fx.ring.keyCalls.Load() - before; n != 0 {
				t.Fatalf("a rejected frame fetched %d room keys", n)
			}
		})
	}

	// The genuine frame still goes through: none of the rejects consumed
	// its sequence number.
	if _, err := fx.recv.Receive(testRoom, mustEncode(t, good), testNow); err != nil {
		t.Fatalf("Receive of the genuine frame: %v", err)
	}
}

// TestReceiverGrants: in an encrypted room a sender is admitted by the
// owner's key grant that its frame carries, for this room, epoch, sender
// and room key; nothing else admits it, and the key ring is never asked.
func TestReceiverGrants(t *testing.T) {
	fx := newRoomFixture(t)
	mallory := newIdentity(t)
	key5 := fx.keys[5]
	otherOwner := newIdentity(t)
	tests := []struct {
		name  string
		id    *identity.Identity
		grant []byte
	}{
		{"self-granted non-member", mallory, grantFor(t, mallory, testRoom, 5, mallory.PublicKey(), key5)},
		{"granted by another owner", mallory, grantFor(t, otherOwner, testRoom, 5, mallory.PublicKey(), key5)},
		{"another member's grant", mallory, grantFor(t, fx.owner, testRoom, 5, fx.alice.PublicKey(), key5)},
		{"grant of another epoch", fx.alice, grantFor(t, fx.owner, testRoom, 4, fx.alice.PublicKey(), fx.keys[4])},
		{"grant of another room", fx.alice, grantFor(t, fx.owner, "other-room", 5, fx.alice.PublicKey(), key5)},
		{"grant of another room key (a key the server chose)", fx.alice, grantFor(t, fx.owner, testRoom, 5, fx.alice.PublicKey(), NewRoomKey())},
		{"garbage grant", fx.alice, bytes.Repeat([]byte{0x55}, GrantSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, wire := seal(t, fx.sealerWithGrant(t, tt.id, 5, tt.grant), Message{Payload: []byte("let me in")}, testNow)
			_, err := fx.recv.Receive(testRoom, wire, testNow)
			if !errors.Is(err, ErrNotMember) || !errors.Is(err, ErrBadGrant) {
				t.Fatalf("Receive = %v, want ErrNotMember and ErrBadGrant", err)
			}
			if errors.Is(err, ErrDecrypt) {
				t.Fatalf("Receive = %v: decryption was attempted", err)
			}
		})
	}

	// A granted sender is admitted without asking the key ring about
	// members; its grant is verified once and then cached.
	s := fx.sealer(t, fx.alice, 5)
	good, wire := seal(t, s, Message{Payload: []byte("granted")}, testNow)
	if _, err := fx.recv.Receive(testRoom, wire, testNow); err != nil {
		t.Fatalf("Receive from a granted member: %v", err)
	}
	if n := fx.recv.grants.len(); n != 1 {
		t.Fatalf("%d grants cached, want 1", n)
	}
	if n := fx.ring.isMember.Load(); n != 0 {
		t.Fatalf("an encrypted room asked IsMember %d times", n)
	}
	// Once cached, a frame of the same sender with another grant is still
	// checked, and refused: the cache holds the grant, not just the
	// sender.
	tampered, _ := seal(t, s, Message{Payload: []byte("tampered grant")}, testNow)
	tampered.Grant = bytes.Clone(good.Grant)
	tampered.Grant[5] ^= 1
	if _, err := fx.recv.Accept(testRoom, tampered, testNow); !errors.Is(err, ErrBadGrant) {
		t.Fatalf("Accept of a frame with a tampered grant after a cached one = %v, want ErrBadGrant", err)
	}
	// The refusal consumed no sequence number: the frame with its genuine
	// grant goes through.
	tampered.Grant = good.Grant
	if _, err := fx.recv.Accept(testRoom, tampered, testNow); err != nil {
		t.Fatalf("Accept of the frame with its genuine grant: %v", err)
	}

	// Without a known owner nothing is admitted.
	fx.ring.setState(testRoom, RoomState{Epoch: 5, Since: testNow, Owner: otherOwner.PublicKey()})
	_, wire = seal(t, s, Message{Payload: []byte("owner changed")}, testNow)
	if _, err := fx.recv.Receive(testRoom, wire, testNow); !errors.Is(err, ErrBadGrant) {
		t.Fatalf("Receive under another owner = %v, want ErrBadGrant", err)
	}
}

// TestReceiverGrantCacheBounded: the cache of verified grants never holds
// more than its bound.
func TestReceiverGrantCacheBounded(t *testing.T) {
	fx := newRoomFixture(t)
	recv, err := NewReceiver(ReceiverConfig{Keys: fx.ring, MaxGrants: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		id := newIdentity(t)
		_, wire := seal(t, fx.sealer(t, id, 5), Message{}, testNow)
		if _, err := recv.Receive(testRoom, wire, testNow); err != nil {
			t.Fatalf("Receive %d: %v", i, err)
		}
		if n := recv.grants.len(); n > 3 {
			t.Fatalf("%d grants cached, bound 3", n)
		}
	}
}

// TestReceiverRemovedMember: a member removed by a rekey has no grant for
// the new epoch, so its frames of that epoch are refused, and its frames
// of the old epoch are refused once the grace period is over.
func TestReceiverRemovedMember(t *testing.T) {
	fx := newRoomFixture(t)
	fx.ring.setKey(testRoom, 6, fx.keys[6])
	fx.ring.setState(testRoom, RoomState{Epoch: 6, Since: testNow})
	// Bob reuses what he has: Alice's grant, his own signature.
	aliceGrant := grantFor(t, fx.owner, testRoom, 6, fx.alice.PublicKey(), fx.keys[6])
	_, wire := seal(t, fx.sealerWithGrant(t, fx.bob, 6, aliceGrant), Message{Payload: []byte("still here?")}, testNow)
	if _, err := fx.recv.Receive(testRoom, wire, testNow); !errors.Is(err, ErrNotMember) {
		t.Fatalf("Receive from a removed member = %v, want ErrNotMember", err)
	}
	later := testNow.Add(time.Minute) // the fixture's grace period
	_, wire = seal(t, fx.sealer(t, fx.bob, 5), Message{Payload: []byte("old epoch")}, later)
	if _, err := fx.recv.Receive(testRoom, wire, later); !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("Receive of the old epoch after the grace period = %v, want ErrStaleEpoch", err)
	}
}

// TestReceiverFrameAge: the replay window does not survive a restart, but
// a frame older than the maximum age is refused by a new receiver; a
// receiver configured with NoMaxFrameAge (a history reader) accepts it.
func TestReceiverFrameAge(t *testing.T) {
	fx := newRoomFixture(t)
	_, wire := seal(t, fx.sealer(t, fx.alice, 5), Message{Payload: []byte("captured")}, testNow)
	if _, err := fx.recv.Receive(testRoom, wire, testNow); err != nil {
		t.Fatalf("Receive: %v", err)
	}
	// A restart: a new receiver, an empty replay window.
	restarted := newReceiver(t, fx.ring)
	if _, err := restarted.Receive(testRoom, wire, testNow.Add(DefaultMaxFrameAge)); err != nil {
		t.Fatalf("Receive at the maximum age: %v", err)
	}
	restarted = newReceiver(t, fx.ring)
	if _, err := restarted.Receive(testRoom, wire, testNow.Add(DefaultMaxFrameAge+time.Millisecond)); !errors.Is(err, ErrFrameAge) {
		t.Fatalf("replay after a restart past the maximum age = %v, want ErrFrameAge", err)
	}
	// From the future: up to the skew allowance.
	restarted = newReceiver(t, fx.ring)
	if _, err := restarted.Receive(testRoom, wire, testNow.Add(-DefaultMaxClockSkew)); err != nil {
		t.Fatalf("Receive of a frame from the skew allowance ahead: %v", err)
	}
	restarted = newReceiver(t, fx.ring)
	if _, err := restarted.Receive(testRoom, wire, testNow.Add(-DefaultMaxClockSkew-time.Millisecond)); !errors.Is(err, ErrFrameAge) {
		t.Fatalf("Receive of a frame beyond the skew allowance = %v, want ErrFrameAge", err)
	}

	history, err := NewReceiver(ReceiverConfig{Keys: fx.ring, MaxFrameAge: NoMaxFrameAge, Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := history.Receive(testRoom, wire, testNow.Add(24*time.Hour)); err != nil {
		t.Fatalf("history reader of a day-old frame: %v", err)
	}
}

// TestReceiverEarlierEpochs: a reader of stored history
// (EarlierEpochs) accepts a frame of any epoch up to the current one whose
// key it holds, long after the grace period, but still checks the
// sender's grant of that epoch and still refuses future epochs, replays
// and epochs whose key it lacks.
func TestReceiverEarlierEpochs(t *testing.T) {
	fx := newRoomFixture(t)
	stored, err := NewReceiver(ReceiverConfig{Keys: fx.ring, MaxFrameAge: NoMaxFrameAge, EarlierEpochs: true})
	if err != nil {
		t.Fatal(err)
	}
	later := testNow.Add(30 * 24 * time.Hour)
	for _, ep := range []uint64{3, 4, 5} {
		_, wire := seal(t, fx.sealer(t, fx.alice, ep), Message{Payload: []byte("old")}, testNow)
		if got, err := stored.Receive(testRoom, wire, later); err != nil || string(got.Payload) != "old" {
			t.Fatalf("stored frame of epoch %d = %q, %v", ep, got.Payload, err)
		}
		if _, err := stored.Receive(testRoom, wire, later); !errors.Is(err, ErrReplay) {
			t.Fatalf("the same stored frame of epoch %d again = %v, want ErrReplay", ep, err)
		}
		// The live receiver refuses the older epochs.
		if ep < 5 {
			if _, err := fx.recv.Receive(testRoom, wire, testNow.Add(time.Hour)); !errors.Is(err, ErrStaleEpoch) {
				t.Fatalf("live receiver, epoch %d an hour later = %v, want ErrStaleEpoch", ep, err)
			}
		}
	}
	// Still checked: the grant of that epoch, the future, a missing key.
	aliceGrant3 := grantFor(t, fx.owner, testRoom, 3, fx.alice.PublicKey(), fx.keys[3])
	_, wire := seal(t, fx.sealerWithGrant(t, fx.bob, 3, aliceGrant3), Message{Payload: []byte("borrowed grant")}, testNow)
	if _, err := stored.Receive(testRoom, wire, later); !errors.Is(err, ErrNotMember) {
		t.Fatalf("stored frame with another member's grant = %v, want ErrNotMember", err)
	}
	_, wire = seal(t, fx.sealer(t, fx.alice, 6), Message{}, testNow)
	if _, err := stored.Receive(testRoom, wire, later); !errors.Is(err, ErrFutureEpoch) {
		t.Fatalf("stored frame of a future epoch = %v, want ErrFutureEpoch", err)
	}
	fx.ring.mu.Lock()
	delete(fx.ring.keys[testRoom], 4)
	fx.ring.mu.Unlock()
	_, wire = seal(t, fx.sealer(t, fx.bob, 4), Message{}, testNow)
	if _, err := stored.Receive(testRoom, wire, later); err == nil {
		t.Fatal("stored frame of an epoch whose key the ring lacks accepted")
	}
}

func TestReceiverKeyMissIsRetriable(t *testing.T) {
	fx := newRoomFixture(t)
	fx.ring.mu.Lock()
	delete(fx.ring.keys[testRoom], 5)
	fx.ring.mu.Unlock()
	s := fx.sealer(t, fx.alice, 5)
	_, wire := seal(t, s, Message{Payload: []byte("x")}, testNow)
	if _, err := fx.recv.Receive(testRoom, wire, testNow); err == nil {
		t.Fatal("Receive without the room key succeeded")
	}
	fx.ring.setKey(testRoom, 5, fx.keys[5])
	if _, err := fx.recv.Receive(testRoom, wire, testNow); err != nil {
		t.Fatalf("Receive once the key is known: %v", err)
	}

	// A receiver holding a wrong key for the epoch (which a key ring that
	// checks its own grant never hands out) refuses a member's frame on
	// the grant, whose commitment names the right key, before decrypting;
	// the frame can be retried when the right key arrives.
	fx.ring.setKey(testRoom, 5, NewRoomKey())
	_, wire = seal(t, s, Message{Payload: []byte("y")}, testNow)
	if _, err := fx.recv.Receive(testRoom, wire, testNow); !errors.Is(err, ErrBadGrant) {
		t.Fatalf("Receive with the wrong room key = %v, want ErrBadGrant", err)
	}
	fx.ring.setKey(testRoom, 5, fx.keys[5])
	if _, err := fx.recv.Receive(testRoom, wire, testNow); err != nil {
		t.Fatalf("Receive after the key was corrected: %v", err)
	}

	// A member granted the key who seals under another key fails to
	// decrypt, and consumes no sequence number.
	liar := fx.sealerWithGrant(t, fx.bob, 5, grantFor(t, fx.owner, testRoom, 5, fx.bob.PublicKey(), fx.keys[5]))
	_, wire = seal(t, liar, Message{Payload: []byte("z")}, testNow)
	f, err := Decode(wire)
	if err != nil {
		t.Fatal(err)
	}
	other := newSealer(t, SealerConfig{Identity: fx.bob, Room: testRoom, Epoch: 5, RoomKey: NewRoomKey(), Grant: f.Grant})
	_, wire = seal(t, other, Message{Payload: []byte("under another key")}, testNow)
	if _, err := fx.recv.Receive(testRoom, wire, testNow); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Receive of a frame sealed under another key = %v, want ErrDecrypt", err)
	}
}

func TestReceiverCleartextRoom(t *testing.T) {
	ring := newTestRing("")
	alice := newIdentity(t)
	ring.setState("open-room", RoomState{Cleartext: true})
	ring.addMember("open-room", alice.PublicKey())
	recv := newReceiver(t, ring)

	cs := newSealer(t, SealerConfig{Identity: alice, Room: "open-room", Cleartext: true})
	_, wire := seal(t, cs, Message{Payload: []byte("public")}, testNow)
	got, err := recv.Receive("open-room", wire, testNow)
	if err != nil || string(got.Payload) != "public" {
		t.Fatalf("Receive = %q, %v; want the payload", got.Payload, err)
	}
	if _, err := recv.Receive("open-room", wire, testNow); !errors.Is(err, ErrReplay) {
		t.Fatalf("Receive again = %v, want ErrReplay", err)
	}

	ss := newSealer(t, SealerConfig{Identity: alice, Room: "open-room", Epoch: 1, RoomKey: NewRoomKey()})
	_, sealed := seal(t, ss, Message{Payload: []byte("hidden")}, testNow)
	if _, err := recv.Receive("open-room", sealed, testNow); !errors.Is(err, ErrModeMismatch) {
		t.Fatalf("sealed frame in a cleartext room = %v, want ErrModeMismatch", err)
	}
	if ring.keyCalls.Load() != 0 {
		t.Errorf("a cleartext room fetched %d room keys", ring.keyCalls.Load())
	}

	// Membership is asked only for frames whose signature verified and
	// that are no replays: a forgery or a copy costs the key ring nothing.
	asked := ring.isMember.Load()
	forged, _ := seal(t, cs, Message{Payload: []byte("forged")}, testNow)
	forged.Sig = bytes.Clone(forged.Sig)
	forged.Sig[3] ^= 1
	if _, err := recv.Accept("open-room", forged, testNow); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged cleartext frame = %v, want ErrBadSignature", err)
	}
	if _, err := recv.Receive("open-room", wire, testNow); !errors.Is(err, ErrReplay) {
		t.Fatalf("Receive again = %v, want ErrReplay", err)
	}
	if n := ring.isMember.Load() - asked; n != 0 {
		t.Errorf("a forgery and a replay asked IsMember %d times", n)
	}
	mallory := newSealer(t, SealerConfig{Identity: newIdentity(t), Room: "open-room", Cleartext: true})
	_, wire = seal(t, mallory, Message{Payload: []byte("let me in")}, testNow)
	if _, err := recv.Receive("open-room", wire, testNow); !errors.Is(err, ErrNotMember) {
		t.Fatalf("non-member's cleartext frame = %v, want ErrNotMember", err)
	}
}

func TestReceiverConfig(t *testing.T) {
	ring := newTestRing("")
	for name, cfg := range map[string]ReceiverConfig{
		"no key ring":              {},
		"negative grace":           {Keys: ring, Grace: -time.Second},
		"negative skew":            {Keys: ring, MaxClockSkew: -time.Second},
		"negative grant cache":     {Keys: ring, MaxGrants: -1},
		"negative maximum age":     {Keys: ring, MaxFrameAge: -time.Second},
		"maximum age below grace":  {Keys: ring, MaxFrameAge: DefaultGrace},
		"maximum age below grace+": {Keys: ring, Grace: time.Hour, MaxFrameAge: time.Hour + time.Minute},
	} {
		if _, err := NewReceiver(cfg); !errors.Is(err, ErrConfigValidation) {
			t.Errorf("NewReceiver(%s) = %v, want ErrConfigValidation", name, err)
		}
	}
	r, err := NewReceiver(ReceiverConfig{Keys: ring})
	if err != nil {
		t.Fatalf("NewReceiver: %v", err)
	}
	if r.grace != DefaultGrace || r.maxAge != DefaultMaxFrameAge || r.maxSkew != DefaultMaxClockSkew || r.grants.max != DefaultMaxTracked {
		t.Errorf("defaults = grace %s, maximum age %s, skew %s, grants %d", r.grace, r.maxAge, r.maxSkew, r.grants.max)
	}
	if _, err := NewReceiver(ReceiverConfig{Keys: ring, MaxFrameAge: NoMaxFrameAge}); err != nil {
		t.Errorf("NewReceiver with NoMaxFrameAge: %v", err)
	}
}

func mustEncode(t testing.TB, f Frame) []byte {
	t.Helper()
	b, err := f.Encode()
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

// TestReceiverNoReplayWindow: a reader of the room log turns the window
// off, so that a sender's frames opened out of order (in parallel, or
// sealed by two processes of one identity whose counts start from their
// clocks) are all accepted; it drops duplicates itself (by log sequence
// and frame ID), so a frame read twice is accepted twice here. Every
// other check still holds.
func TestReceiverNoReplayWindow(t *testing.T) {
	fx := newRoomFixture(t)
	stored, err := NewReceiver(ReceiverConfig{Keys: fx.ring, MaxFrameAge: NoMaxFrameAge, EarlierEpochs: true, NoReplayWindow: true})
	if err != nil {
		t.Fatal(err)
	}
	s := fx.sealer(t, fx.alice, 5)
	_, early := seal(t, s, Message{Payload: []byte("early")}, testNow)
	var later [][]byte
	for range ReplayWindowSize + 1 {
		_, w := seal(t, s, Message{}, testNow)
		later = append(later, w)
	}
	for _, w := range later {
		if _, err := stored.Receive(testRoom, w, testNow); err != nil {
			t.Fatalf("Receive: %v", err)
		}
	}
	if got, err := stored.Receive(testRoom, early, testNow); err != nil || string(got.Payload) != "early" {
		t.Fatalf("a frame sealed %d before the last one read = %q, %v; want it accepted", ReplayWindowSize+1, got.Payload, err)
	}
	if _, err := stored.Receive(testRoom, early, testNow); err != nil {
		t.Fatalf("the same frame again = %v; the log reader drops duplicates itself", err)
	}
	// The live receiver, with its window, refuses the early frame now.
	for _, w := range later {
		if _, err := fx.recv.Receive(testRoom, w, testNow); err != nil {
			t.Fatalf("live Receive: %v", err)
		}
	}
	if _, err := fx.recv.Receive(testRoom, early, testNow); !errors.Is(err, ErrReplay) {
		t.Fatalf("live receiver, the early frame last = %v, want ErrReplay", err)
	}
	// The other checks still apply: a tampered frame fails.
	tampered := append([]byte(nil), later[0]...)
	tampered[len(tampered)/2] ^= 1
	if _, err := stored.Receive(testRoom, tampered, testNow); err == nil {
		t.Fatal("a tampered frame was accepted without the replay window")
	}
}
