package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

const (
	// keyringTimeout bounds the control-plane calls the key ring makes on
	// behalf of a receiver (which has no context of its own).
	keyringTimeout = 5 * time.Second

	// roomRefreshInterval is how often frames may make the key ring fetch
	// a room's state (a frame of a newer epoch, an unknown room) or retry
	// a room key that failed: at most once per interval and room, however
	// many frames arrive, so that a flood of frames never becomes a flood
	// of requests. A frame that needs a refresh waits for the next one
	// (at most this long) rather than being dropped.
	roomRefreshInterval = time.Second

	// memberTTL is how long a cleartext room's receiver trusts that a
	// sender is a member: a member removed meanwhile is refused by
	// receivers that cached it at most this long after its removal. Short
	// enough to bound that window, long enough that a chatty member costs
	// one membership request per receiver every half minute.
	memberTTL = 30 * time.Second

	// memberRetryInterval is how often a sender found not to be a member
	// of a cleartext room (or whose check failed) is asked about again:
	// one request per interval, however many frames it sends.
	memberRetryInterval = time.Second

	// maxMemberAnswers bounds the membership answers cached per room; past
	// it the room's answers are dropped and asked again.
	maxMemberAnswers = 4096
)

// roomCache is what the client knows about one room. Its fields are
// guarded by the keyring's mutex.
type roomCache struct {
	// info is the room's last known state; its owner is checked against
	// its ID (subjects.CheckRoomOwner), so info.Owner is authentic.
	info     subjects.RoomInfo
	previous uint64
	since    time.Time
	// verified is the highest epoch whose room key this client holds
	// authenticated (granted by the owner): no room state with a lower
	// epoch is taken.
	verified uint64
	// keys are the room keys of the epochs this client authenticated;
	// grants its own key grants of those epochs, which its frames carry.
	keys   map[uint64][]byte
	grants map[uint64][]byte
	// keyFailures remembers, per epoch, when fetching a room key last
	// failed and why: it is asked again at most once per
	// roomRefreshInterval.
	keyFailures map[uint64]keyFailure
	// members caches, in a cleartext room, what the service said about
	// senders (see memberTTL and memberRetryInterval).
	members   map[string]memberAnswer
	sealer    *e2e.Sealer
	publishMu sync.Mutex // held across Seal and Publish: sequence order
}

// keyFailure is a failed room key fetch.
type keyFailure struct {
	at  time.Time
	err error
}

// memberAnswer is the service's answer about one sender of a cleartext
// room.
type memberAnswer struct {
	member bool
	at     time.Time
}

// refreshRound is one fetch of a room's state: scheduled to start at
// start, done closed when it finished with err.
type refreshRound struct {
	start time.Time
	done  chan struct{}
	err   error
}

// flight is one request in progress that concurrent callers share.
type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// keyring caches rooms, their authenticated keys and, for cleartext rooms,
// membership answers for one connection. It implements e2e.KeyRing for
// the receiver.
type keyring struct {
	c  *Conn
	mu sync.Mutex
	// rooms are the rooms this client knows.
	rooms map[string]*roomCache
	// refreshes holds each room's latest refresh round.
	refreshes map[string]*refreshRound
	// keyFetches and memberChecks are the requests in progress, by room
	// and epoch or room and sender.
	keyFetches   map[string]*flight[[]byte]
	memberChecks map[string]*flight[bool]
	// reconnected is closed at the connection's next reconnect, which
	// drops every membership answer.
	reconnected <-chan struct{}
	// bindings are the newest encryption-key bindings seen, by user, so
	// that a server cannot hand back an older (replaced) key; bounded by
	// maxBindings.
	bindings map[string]seenBinding
}

// seenBinding is the newest encryption-key binding seen of one user.
type seenBinding struct {
	version uint64
	key     []byte
}

// maxBindings bounds the bindings a key ring remembers; beyond it, it
// forgets them all and starts again (a client that seals to more users
// than this in one session keeps rollback protection only between
// forgettings).
const maxBindings = 1 << 16

var _ e2e.KeyRing = (*keyring)(nil)

func newKeyring(c *Conn) *keyring {
	return &keyring{
		c:            c,
		rooms:        map[string]*roomCache{},
		refreshes:    map[string]*refreshRound{},
		keyFetches:   map[string]*flight[[]byte]{},
		memberChecks: map[string]*flight[bool]{},
		reconnected:  c.reconnects.wait(),
		bindings:     map[string]seenBinding{},
	}
}

// room returns the cached room. An unknown room is fetched, at most once
// per roomRefreshInterval; refresh fetches it now whatever is cached.
func (k *keyring) room(ctx context.Context, roomID string, refresh bool) (*roomCache, error) {
	k.mu.Lock()
	rc, ok := k.rooms[roomID]
	k.mu.Unlock()
	if ok && !refresh {
		return rc, nil
	}
	var err error
	if refresh {
		err = k.refresh(ctx, roomID, time.Now(), false)
	} else {
		err = k.refresh(ctx, roomID, time.Now().Add(-roomRefreshInterval), true)
	}
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if rc, ok := k.rooms[roomID]; ok {
		return rc, nil
	}
	return nil, fmt.Errorf("room %s: %w: not known", roomID, ErrNotFound)
}

// refresh returns once a fetch of the room's state that started at or
// after `after` has finished, with its error. It shares a fetch in
// progress that qualifies (or, when limited, one scheduled for later);
// otherwise it fetches: when limited, no sooner than roomRefreshInterval
// after the previous fetch started (waiting until then), so that frames
// cause at most one fetch per interval and room.
func (k *keyring) refresh(ctx context.Context, roomID string, after time.Time, limited bool) error {
	k.mu.Lock()
	round := k.refreshes[roomID]
	if round != nil && !round.start.Before(after) && (limited || !round.start.After(time.Now())) {
		k.mu.Unlock()
		return waitRound(ctx, round)
	}
	start := time.Now()
	if limited && round != nil {
		start = later(start, round.start.Add(roomRefreshInterval))
	}
	mine := &refreshRound{start: start, done: make(chan struct{})}
	k.refreshes[roomID] = mine
	k.mu.Unlock()

	// This caller runs the round; others that qualify wait for it.
	mine.err = k.runRound(ctx, roomID, start)
	close(mine.done)
	return mine.err
}

// runRound waits until start, then fetches and learns the room's state.
func (k *keyring) runRound(ctx context.Context, roomID string, start time.Time) error {
	if d := time.Until(start); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("refresh room %s: %w", roomID, ctx.Err())
		}
	}
	info, err := k.c.getRoom(ctx, roomID)
	if err != nil {
		return err
	}
	return k.learn(info)
}

// waitRound waits for a refresh round to finish and returns its error.
func waitRound(ctx context.Context, round *refreshRound) error {
	select {
	case <-round.done:
		return round.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// checkRoomInfo checks what a room's description claims on its own: its
// ID is derived from its owner's key, mode and salt, so that a server can
// neither replace the owner, whose grants admit everyone else, nor present
// an encrypted room as cleartext.
func checkRoomInfo(info subjects.RoomInfo) error {
	if err := subjects.CheckRoomOwner(info.RoomID, info.Owner, info.Mode, info.Salt); err != nil {
		return fmt.Errorf("room %s claims owner %s and mode %s: %w: %w", info.RoomID, info.Owner, info.Mode, ErrUntrustedRoom, err)
	}
	if info.Mode != subjects.ModeE2E && info.Mode != subjects.ModeCleartext {
		return fmt.Errorf("room %s: %w: unknown mode %q", info.RoomID, ErrUntrustedRoom, info.Mode)
	}
	return nil
}

// learn records a room's current state after checking it: the owner is the
// one the room ID names, owner and mode are those learned before, and the
// epoch is not below one this client verified. A new epoch starts its
// grace period for the previous one. A fresh state also drops the room's
// membership answers (the room may have changed).
func (k *keyring) learn(info subjects.RoomInfo) error {
	if err := checkRoomInfo(info); err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	rc, ok := k.rooms[info.RoomID]
	if !ok {
		k.rooms[info.RoomID] = &roomCache{
			info:        info,
			since:       time.Now(),
			keys:        map[uint64][]byte{},
			grants:      map[uint64][]byte{},
			keyFailures: map[uint64]keyFailure{},
		}
		return nil
	}
	switch {
	case info.Owner != rc.info.Owner:
		// Unreachable while room IDs name their owner; checked anyway.
		return fmt.Errorf("room %s: %w: owner %s, was %s", info.RoomID, ErrUntrustedRoom, info.Owner, rc.info.Owner)
	case info.Mode != rc.info.Mode:
		return fmt.Errorf("room %s: %w: mode %s, was %s", info.RoomID, ErrUntrustedRoom, info.Mode, rc.info.Mode)
	case info.Epoch < rc.verified:
		return fmt.Errorf("room %s: %w: epoch %d, but this client holds the owner's key of epoch %d", info.RoomID, ErrEpochRollback, info.Epoch, rc.verified)
	}
	if info.Epoch != rc.info.Epoch {
		// A lower epoch than the last one seen (but not below a verified
		// one) replaces an epoch this client never got a key for.
		if info.Epoch > rc.info.Epoch {
			rc.previous = rc.info.Epoch
		} else {
			rc.previous = 0
		}
		rc.since = time.Now()
		rc.sealer = nil
	}
	rc.info = info
	rc.members = nil
	return nil
}

// info returns the room's last known state.
func (k *keyring) info(rc *roomCache) subjects.RoomInfo {
	k.mu.Lock()
	defer k.mu.Unlock()
	return rc.info
}

// changed drops what may no longer hold after a membership change this
// client made: the room's membership answers.
func (k *keyring) changed(roomID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if rc, ok := k.rooms[roomID]; ok {
		rc.members = nil
	}
}

// forget drops a room (after leaving or removal).
func (k *keyring) forget(roomID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.rooms, roomID)
}

// RoomState implements e2e.KeyRing.
func (k *keyring) RoomState(roomID string) (e2e.RoomState, error) {
	k.mu.Lock()
	rc, ok := k.rooms[roomID]
	k.mu.Unlock()
	if !ok {
		ctx, cancel := context.WithTimeout(context.Background(), keyringTimeout)
		defer cancel()
		var err error
		if rc, err = k.room(ctx, roomID, false); err != nil {
			return e2e.RoomState{}, err
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return e2e.RoomState{
		Cleartext: rc.info.Mode == subjects.ModeCleartext,
		Epoch:     rc.info.Epoch,
		Since:     rc.since,
		Previous:  rc.previous,
		Owner:     rc.info.Owner,
	}, nil
}

// RoomKey implements e2e.KeyRing: the room key of epoch, fetched sealed to
// this identity, opened with its encryption key and authenticated by the
// owner's grant.
func (k *keyring) RoomKey(roomID string, epoch uint64) ([]byte, error) {
	k.mu.Lock()
	if rc, ok := k.rooms[roomID]; ok {
		if key, ok := rc.keys[epoch]; ok {
			k.mu.Unlock()
			return key, nil
		}
	}
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), keyringTimeout)
	defer cancel()
	return k.roomKey(ctx, roomID, epoch)
}

// roomKey returns the authenticated room key of epoch. Concurrent callers
// share one fetch; a fetch that failed is not retried within
// roomRefreshInterval (its error is returned).
func (k *keyring) roomKey(ctx context.Context, roomID string, epoch uint64) ([]byte, error) {
	rc, err := k.room(ctx, roomID, false)
	if err != nil {
		return nil, err
	}
	flightKey := roomID + "." + strconv.FormatUint(epoch, 10)
	k.mu.Lock()
	if key, ok := rc.keys[epoch]; ok {
		k.mu.Unlock()
		return key, nil
	}
	if f, ok := rc.keyFailures[epoch]; ok && time.Since(f.at) < roomRefreshInterval {
		k.mu.Unlock()
		return nil, f.err
	}
	if fl, ok := k.keyFetches[flightKey]; ok {
		k.mu.Unlock()
		select {
		case <-fl.done:
			return fl.val, fl.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	fl := &flight[[]byte]{done: make(chan struct{})}
	k.keyFetches[flightKey] = fl
	owner := rc.info.Owner
	k.mu.Unlock()

	key, grant, err := k.fetchKey(ctx, roomID, epoch, owner)
	k.mu.Lock()
	delete(k.keyFetches, flightKey)
	if err == nil {
		k.rememberLocked(rc, epoch, key, grant)
		delete(rc.keyFailures, epoch)
	} else if ctx.Err() == nil {
		rc.keyFailures[epoch] = keyFailure{at: time.Now(), err: err}
	}
	k.mu.Unlock()
	fl.val, fl.err = key, err
	close(fl.done)
	return key, err
}

// fetchKey asks the service for this client's sealed room key of epoch,
// opens it and checks the owner's grant of it to this client. A key whose
// grant is missing or does not verify is wiped and refused with
// ErrUnauthenticatedKey.
func (k *keyring) fetchKey(ctx context.Context, roomID string, epoch uint64, owner string) ([]byte, []byte, error) {
	if k.c.encKey == nil {
		return nil, nil, fmt.Errorf("room key of %s: %w", roomID, ErrNoEncryptionKey)
	}
	var resp subjects.KeyResponse
	if err := k.c.call(ctx, subjects.RoomsKey, subjects.KeyRequest{RoomID: roomID, Epoch: epoch}, &resp); err != nil {
		return nil, nil, err
	}
	if resp.Epoch != epoch {
		return nil, nil, fmt.Errorf("room key of %s: %w: asked for epoch %d, the service answered epoch %d", roomID, ErrUnauthenticatedKey, epoch, resp.Epoch)
	}
	self := k.c.id.PublicKey()
	key, err := e2e.OpenRoomKey(k.c.encKey, roomID, epoch, self, resp.SealedKey)
	if err != nil {
		return nil, nil, fmt.Errorf("open room key of %s epoch %d: %w", roomID, epoch, err)
	}
	if err := e2e.VerifyGrant(owner, roomID, epoch, self, key, resp.Grant); err != nil {
		clear(key)
		return nil, nil, fmt.Errorf("room key of %s epoch %d: %w (owner %s): %w", roomID, epoch, ErrUnauthenticatedKey, owner, err)
	}
	return key, resp.Grant, nil
}

// remember caches a room key of epoch this client made itself, as the
// owner, and its own grant of it.
func (k *keyring) remember(roomID string, epoch uint64, key, grant []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if rc, ok := k.rooms[roomID]; ok {
		k.rememberLocked(rc, epoch, key, grant)
	}
}

// rememberLocked caches an authenticated room key and this client's grant
// of it; k.mu is held.
func (k *keyring) rememberLocked(rc *roomCache, epoch uint64, key, grant []byte) {
	rc.keys[epoch] = key
	rc.grants[epoch] = grant
	rc.verified = max(rc.verified, epoch)
}

// IsMember implements e2e.KeyRing, for cleartext rooms (an encrypted
// room's senders prove their membership with the owner's key grant). It
// asks the service about the one sender; a positive answer holds for
// memberTTL, a negative one (or a failed check: fail closed) for
// memberRetryInterval. Every answer is dropped when the connection
// reconnects or a fresh state of the room arrives.
func (k *keyring) IsMember(roomID, sender string) bool {
	now := time.Now()
	k.mu.Lock()
	k.dropAnswersAfterReconnect()
	rc, ok := k.rooms[roomID]
	if !ok {
		k.mu.Unlock()
		return false
	}
	if a, ok := rc.members[sender]; ok {
		if a.member && now.Sub(a.at) < memberTTL {
			k.mu.Unlock()
			return true
		}
		if !a.member && now.Sub(a.at) < memberRetryInterval {
			k.mu.Unlock()
			return false
		}
	}
	flightKey := roomID + "." + sender
	if fl, ok := k.memberChecks[flightKey]; ok {
		k.mu.Unlock()
		<-fl.done // bounded by keyringTimeout
		return fl.val
	}
	fl := &flight[bool]{done: make(chan struct{})}
	k.memberChecks[flightKey] = fl
	k.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), keyringTimeout)
	member, err := k.c.isMember(ctx, roomID, sender)
	cancel()
	member = member && err == nil

	k.mu.Lock()
	delete(k.memberChecks, flightKey)
	if rc, ok := k.rooms[roomID]; ok {
		if rc.members == nil || len(rc.members) >= maxMemberAnswers {
			rc.members = map[string]memberAnswer{}
		}
		rc.members[sender] = memberAnswer{member: member, at: time.Now()}
	}
	k.mu.Unlock()
	fl.val = member
	close(fl.done)
	return member
}

// dropAnswersAfterReconnect drops every room's membership answers if the
// connection reconnected since they were collected; k.mu is held.
func (k *keyring) dropAnswersAfterReconnect() {
	select {
	case <-k.reconnected:
	default:
		return
	}
	for _, rc := range k.rooms {
		rc.members = nil
	}
	k.reconnected = k.c.reconnects.wait()
}

// sealer returns the sealer for the room's current epoch: in an encrypted
// room with the authenticated room key and this client's grant of it.
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
		k.mu.Lock()
		cfg.RoomKey, cfg.Grant = key, rc.grants[info.Epoch]
		k.mu.Unlock()
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

// checkBinding refuses an encryption-key binding older than one already
// seen for the same user, or another key under the same version (the
// server, or the buckets, would be replaying a replaced key, perhaps a
// stolen one); it remembers newer ones. It verifies the binding first, so
// that a forged one cannot raise the mark. The error matches
// ErrKeyRollback, or subjects.ErrBadSignature for a binding that does not
// verify.
func (k *keyring) checkBinding(r e2e.Recipient) error {
	if err := subjects.VerifyEncKeyBinding(r.Pub, r.EncKey, r.EncKeyVersion, r.EncKeyIssuedAt, r.EncKeySig); err != nil {
		return fmt.Errorf("user %s: %w", r.Pub, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	seen, ok := k.bindings[r.Pub]
	switch {
	case !ok || r.EncKeyVersion > seen.version:
		if len(k.bindings) >= maxBindings {
			clear(k.bindings)
		}
		k.bindings[r.Pub] = seenBinding{version: r.EncKeyVersion, key: bytes.Clone(r.EncKey)}
		return nil
	case r.EncKeyVersion == seen.version && bytes.Equal(r.EncKey, seen.key):
		return nil
	case r.EncKeyVersion == seen.version:
		return fmt.Errorf("%w: user %s has two encryption keys under binding version %d", ErrKeyRollback, r.Pub, r.EncKeyVersion)
	default:
		return fmt.Errorf("%w: user %s offered with encryption-key binding version %d after version %d", ErrKeyRollback, r.Pub, r.EncKeyVersion, seen.version)
	}
}
