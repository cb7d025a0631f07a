package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/identity"
)

// testNow is the fixed clock of the tests.
var testNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const testRoom = "golden-room"

// fixedIdentity returns the identity whose raw Ed25519 seed is 32 bytes of
// b.
func fixedIdentity(t testing.TB, b byte) *identity.Identity {
	t.Helper()
	seed, err := nkeys.EncodeSeed(nkeys.PrefixByteUser, bytes.Repeat([]byte{b}, 32))
	if err != nil {
		t.Fatalf("encode seed: %v", err)
	}
	id, err := identity.FromSeed(seed)
	if err != nil {
		t.Fatalf("identity from seed: %v", err)
	}
	return id
}

func newIdentity(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatalf("generate identity: %v", err)
	}
	return id
}

// fixedRoomKey returns the room key 0x00, 0x01, …, 0x1f.
func fixedRoomKey() []byte {
	k := make([]byte, RoomKeySize)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

// countingReader yields 0x40, 0x41, … for reproducible nonces.
type countingReader struct{ next byte }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0x40 + r.next
		r.next++
	}
	return len(p), nil
}

// fixedOwner is the owner of the golden rooms: the identity of 32 bytes
// of 0x02.
func fixedOwner(t testing.TB) *identity.Identity { return fixedIdentity(t, 0x02) }

// grantFor returns owner's key grant to member of roomKey in room at epoch.
func grantFor(t testing.TB, owner *identity.Identity, room string, epoch uint64, member string, roomKey []byte) []byte {
	t.Helper()
	g, err := SignGrant(owner, room, epoch, member, roomKey)
	if err != nil {
		t.Fatalf("SignGrant: %v", err)
	}
	return g
}

// newSealer returns a sealer for cfg; cfg.Grant, when nil in an encrypted
// room, becomes the fixed owner's grant to cfg.Identity.
func newSealer(t testing.TB, cfg SealerConfig) *Sealer {
	t.Helper()
	if !cfg.Cleartext && cfg.Grant == nil && cfg.Identity != nil && len(cfg.RoomKey) == RoomKeySize {
		cfg.Grant = grantFor(t, fixedOwner(t), cfg.Room, cfg.Epoch, cfg.Identity.PublicKey(), cfg.RoomKey)
	}
	s, err := NewSealer(cfg)
	if err != nil {
		t.Fatalf("NewSealer: %v", err)
	}
	return s
}

func seal(t testing.TB, s *Sealer, m Message, now time.Time) (Frame, []byte) {
	t.Helper()
	f, wire, err := s.Seal(m, now)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return f, wire
}

// mutateJSON decodes wire as a JSON object, lets mutate change it and
// encodes it again (with sorted keys).
func mutateJSON(t testing.TB, wire []byte, mutate func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(wire))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode wire as a map: %v", err)
	}
	mutate(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("encode map: %v", err)
	}
	return b
}

// testRing is a KeyRing backed by maps, counting the room keys it hands out.
type testRing struct {
	mu       sync.Mutex
	states   map[string]RoomState
	keys     map[string]map[uint64][]byte
	members  map[string]map[string]bool
	owner    string // the default owner of encrypted rooms
	keyCalls atomic.Int64
	isMember atomic.Int64 // IsMember calls
}

var _ KeyRing = (*testRing)(nil)

// newTestRing returns an empty ring whose encrypted rooms belong to
// owner.
func newTestRing(owner string) *testRing {
	return &testRing{
		owner:   owner,
		states:  make(map[string]RoomState),
		keys:    make(map[string]map[uint64][]byte),
		members: make(map[string]map[string]bool),
	}
}

// setState sets room's state; an encrypted room's empty Owner becomes the
// fixed owner.
func (r *testRing) setState(room string, st RoomState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !st.Cleartext && st.Owner == "" {
		st.Owner = r.owner
	}
	r.states[room] = st
}

func (r *testRing) setKey(room string, epoch uint64, key []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys[room] == nil {
		r.keys[room] = make(map[uint64][]byte)
	}
	r.keys[room][epoch] = key
}

func (r *testRing) addMember(room, pub string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.members[room] == nil {
		r.members[room] = make(map[string]bool)
	}
	r.members[room][pub] = true
}

func (r *testRing) RoomState(room string) (RoomState, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, ok := r.states[room]
	if !ok {
		return RoomState{}, fmt.Errorf("unknown room %s", room)
	}
	return st, nil
}

func (r *testRing) RoomKey(room string, epoch uint64) ([]byte, error) {
	r.keyCalls.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.keys[room][epoch]
	if !ok {
		return nil, fmt.Errorf("no key for room %s epoch %d", room, epoch)
	}
	return k, nil
}

func (r *testRing) IsMember(room, sender string) bool {
	r.isMember.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.members[room][sender]
}

func newReceiver(t testing.TB, ring KeyRing) *Receiver {
	t.Helper()
	r, err := NewReceiver(ReceiverConfig{Keys: ring, Grace: time.Minute})
	if err != nil {
		t.Fatalf("NewReceiver: %v", err)
	}
	return r
}
