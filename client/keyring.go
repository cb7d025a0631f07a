package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

// keyringTimeout bounds the control-plane calls the key ring makes on
// behalf of a receiver (which has no context of its own).
const keyringTimeout = 5 * time.Second

// memberRefreshInterval limits how often an unknown sender triggers a
// refresh of a room's member list.
const memberRefreshInterval = time.Second

// roomCache is what the client knows about one room.
type roomCache struct {
	info      subjects.RoomInfo
	previous  uint64
	since     time.Time
	keys      map[uint64][]byte
	members   map[string]bool
	membersAt time.Time
	sealer    *e2e.Sealer
	publishMu sync.Mutex // held across Seal and Publish: sequence order
	fetchedAt time.Time
}

// keyring caches rooms, their opened keys and members for one connection.
// It implements e2e.KeyRing for the receiver.
type keyring struct {
	c     *Conn
	mu    sync.Mutex
	rooms map[string]*roomCache
}

var _ e2e.KeyRing = (*keyring)(nil)

func newKeyring(c *Conn) *keyring {
	return &keyring{c: c, rooms: map[string]*roomCache{}}
}

// room returns the cached room, fetching it when unknown or when refresh is
// set.
func (k *keyring) room(ctx context.Context, roomID string, refresh bool) (*roomCache, error) {
	k.mu.Lock()
	rc, ok := k.rooms[roomID]
	k.mu.Unlock()
	if ok && !refresh {
		return rc, nil
	}
	info, err := k.c.GetRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	k.learn(info)
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rooms[roomID], nil
}

// learn records a room's current state; a new epoch starts its grace period
// for the previous one.
func (k *keyring) learn(info subjects.RoomInfo) {
	k.mu.Lock()
	defer k.mu.Unlock()
	rc, ok := k.rooms[info.RoomID]
	if !ok {
		k.rooms[info.RoomID] = &roomCache{info: info, since: time.Now(), keys: map[uint64][]byte{}, fetchedAt: time.Now()}
		return
	}
	if info.Epoch > rc.info.Epoch {
		rc.previous = rc.info.Epoch
		rc.since = time.Now()
		rc.sealer = nil
	}
	if info.Epoch >= rc.info.Epoch {
		rc.info = info
	}
	rc.fetchedAt = time.Now()
}

// forget drops a room (after leaving or removal).
func (k *keyring) forget(roomID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.rooms, roomID)
}

// RoomState implements e2e.KeyRing.
func (k *keyring) RoomState(roomID string) (e2e.RoomState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), keyringTimeout)
	defer cancel()
	rc, err := k.room(ctx, roomID, false)
	if err != nil {
		return e2e.RoomState{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return e2e.RoomState{
		Cleartext: rc.info.Mode == subjects.ModeCleartext,
		Epoch:     rc.info.Epoch,
		Since:     rc.since,
		Previous:  rc.previous,
	}, nil
}

// RoomKey implements e2e.KeyRing: the room key of epoch, fetched sealed to
// this identity and opened with its encryption key.
func (k *keyring) RoomKey(roomID string, epoch uint64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), keyringTimeout)
	defer cancel()
	return k.roomKey(ctx, roomID, epoch)
}

func (k *keyring) roomKey(ctx context.Context, roomID string, epoch uint64) ([]byte, error) {
	k.mu.Lock()
	if rc, ok := k.rooms[roomID]; ok {
		if key, ok := rc.keys[epoch]; ok {
			k.mu.Unlock()
			return key, nil
		}
	}
	k.mu.Unlock()
	if k.c.encKey == nil {
		return nil, fmt.Errorf("room key of %s: %w", roomID, ErrNoEncryptionKey)
	}
	var resp subjects.KeyResponse
	if err := k.c.call(ctx, subjects.RoomsKey, subjects.KeyRequest{RoomID: roomID, Epoch: epoch}, &resp); err != nil {
		return nil, err
	}
	key, err := e2e.OpenRoomKey(k.c.encKey, roomID, resp.Epoch, k.c.id.PublicKey(), resp.SealedKey)
	if err != nil {
		return nil, fmt.Errorf("open room key of %s epoch %d: %w", roomID, resp.Epoch, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if rc, ok := k.rooms[roomID]; ok {
		rc.keys[resp.Epoch] = key
	}
	return key, nil
}

// IsMember implements e2e.KeyRing; an unknown sender refreshes the member
// list at most once per memberRefreshInterval.
func (k *keyring) IsMember(roomID, sender string) bool {
	k.mu.Lock()
	rc, ok := k.rooms[roomID]
	if ok && rc.members[sender] {
		k.mu.Unlock()
		return true
	}
	stale := ok && time.Since(rc.membersAt) >= memberRefreshInterval
	k.mu.Unlock()
	if ok && !stale {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyringTimeout)
	defer cancel()
	if _, err := k.room(ctx, roomID, false); err != nil {
		return false
	}
	members, err := k.c.Members(ctx, roomID)
	if err != nil {
		return false
	}
	set := make(map[string]bool, len(members))
	for _, m := range members {
		set[m.Pub] = true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if rc, ok := k.rooms[roomID]; ok {
		rc.members, rc.membersAt = set, time.Now()
	}
	return set[sender]
}

// sealer returns the sealer for the room's current epoch.
func (k *keyring) sealer(ctx context.Context, roomID string) (*roomCache, *e2e.Sealer, error) {
	rc, err := k.room(ctx, roomID, false)
	if err != nil {
		return nil, nil, err
	}
	k.mu.Lock()
	if rc.sealer != nil {
		s := rc.sealer
		k.mu.Unlock()
		return rc, s, nil
	}
	info := rc.info
	k.mu.Unlock()
	cfg := e2e.SealerConfig{Identity: k.c.id, Room: roomID, Epoch: info.Epoch, Cleartext: info.Mode == subjects.ModeCleartext}
	if !cfg.Cleartext {
		key, err := k.roomKey(ctx, roomID, info.Epoch)
		if err != nil {
			return nil, nil, err
		}
		cfg.RoomKey = key
	}
	s, err := e2e.NewSealer(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("sealer for room %s: %w", roomID, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if rc.info.Epoch == info.Epoch {
		rc.sealer = s
	}
	return rc, s, nil
}

// isRetryable reports receive errors that a refresh of the room may cure.
func isRetryable(err error) bool {
	return errors.Is(err, e2e.ErrFutureEpoch)
}

// remember caches a room key this client made itself.
func (k *keyring) remember(roomID string, epoch uint64, key []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if rc, ok := k.rooms[roomID]; ok {
		rc.keys[epoch] = key
	}
}
