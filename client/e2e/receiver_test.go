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

// roomFixture is an encrypted room with two members, alice and bob, at
// epoch 5 (keys for epochs 3 to 6 exist), seen by a receiver whose epoch 5
// began at testNow.
type roomFixture struct {
	ring       *testRing
	recv       *Receiver
	alice, bob *identity.Identity
	keys       map[uint64][]byte
}

func newRoomFixture(t *testing.T) *roomFixture {
	t.Helper()
	fx := &roomFixture{ring: newTestRing(), alice: newIdentity(t), bob: newIdentity(t), keys: make(map[uint64][]byte)}
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

func (fx *roomFixture) sealer(t *testing.T, id *identity.Identity, epoch uint64) *Sealer {
	t.Helper()
	return newSealer(t, SealerConfig{Identity: id, Room: testRoom, Epoch: epoch, RoomKey: fx.keys[epoch]})
}

func TestReceiverAccepts(t *testing.T) {
	fx := newRoomFixture(t)
	s := fx.sealer(t, fx.alice, 5)
	f, wire := seal(t, s, Message{Payload: []byte("hello bob")}, testNow)

	got, err := fx.recv.Receive(testRoom, wire, testNow.Add(time.Hour))
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
			_, wire := seal(t, fx.sealer(t, fx.alice, tt.epoch), Message{Payload: []byte("x")}, testNow)
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
	mallory := newIdentity(t)
	_, fromMallory := seal(t, fx.sealer(t, mallory, 5), Message{Payload: []byte("let me in")}, testNow)
	good, _ := seal(t, fx.sealer(t, fx.alice, 5), Message{Payload: []byte("x")}, testNow)
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
		{"non-member", testRoom, fromMallory, ErrNotMember},
		{"bad signature", testRoom, mustEncode(t, forged), ErrBadSignature},
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

func TestReceiverRemovedMember(t *testing.T) {
	fx := newRoomFixture(t)
	_, wire := seal(t, fx.sealer(t, fx.bob, 5), Message{Payload: []byte("still here?")}, testNow)
	fx.ring.removeMember(testRoom, fx.bob.PublicKey())
	if _, err := fx.recv.Receive(testRoom, wire, testNow); !errors.Is(err, ErrNotMember) {
		t.Fatalf("Receive from a removed member = %v, want ErrNotMember", err)
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

	// A frame signed by a member but sealed under a wrong key fails to
	// decrypt, and can be retried when the right key arrives.
	fx.ring.setKey(testRoom, 5, NewRoomKey())
	_, wire = seal(t, s, Message{Payload: []byte("y")}, testNow)
	if _, err := fx.recv.Receive(testRoom, wire, testNow); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Receive with the wrong room key = %v, want ErrDecrypt", err)
	}
	fx.ring.setKey(testRoom, 5, fx.keys[5])
	if _, err := fx.recv.Receive(testRoom, wire, testNow); err != nil {
		t.Fatalf("Receive after the key was corrected: %v", err)
	}
}

func TestReceiverCleartextRoom(t *testing.T) {
	ring := newTestRing()
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
}

func TestReceiverConfig(t *testing.T) {
	for name, cfg := range map[string]ReceiverConfig{
		"no key ring":    {},
		"negative grace": {Keys: newTestRing(), Grace: -time.Second},
	} {
		if _, err := NewReceiver(cfg); !errors.Is(err, ErrConfigValidation) {
			t.Errorf("NewReceiver(%s) = %v, want ErrConfigValidation", name, err)
		}
	}
	r, err := NewReceiver(ReceiverConfig{Keys: newTestRing()})
	if err != nil {
		t.Fatalf("NewReceiver: %v", err)
	}
	if r.grace != DefaultGrace {
		t.Errorf("grace = %s, want DefaultGrace", r.grace)
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
