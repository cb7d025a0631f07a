package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

// ErrNoEncryptionKey means an encrypted-room operation needs the
// connection's encryption key (WithEncryptionKey or SetEncryptionKey).
var ErrNoEncryptionKey = errors.New("no encryption key: call SetEncryptionKey first")

// EncryptionKeyPath is where the encryption key of the identity whose seed
// is at seedPath is kept: beside it, with the suffix ".enc".
func EncryptionKeyPath(seedPath string) string { return seedPath + ".enc" }

// LoadOrCreateEncryptionKey loads the encryption key at path, or creates
// one and saves it there (mode 0600) when there is none.
func LoadOrCreateEncryptionKey(path string) (*e2e.EncryptionKey, bool, error) {
	k, err := e2e.LoadEncryptionKey(path)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if k, err = e2e.GenerateEncryptionKey(); err != nil {
		return nil, false, err
	}
	if err := e2e.SaveEncryptionKey(path, k); err != nil {
		return nil, false, err
	}
	return k, true, nil
}

// SetEncryptionKey loads the encryption key at path (creating and saving
// it on first use), registers its public half with the users service,
// bound to this identity by its signature, and uses it from now on.
//
// When there is no file at path but the identity already has a key
// registered, SetEncryptionKey fails with ErrEncryptionKeyLost and changes
// nothing: a new key would cost every room key sealed to the old one.
func (c *Conn) SetEncryptionKey(ctx context.Context, path string) error {
	k, err := e2e.LoadEncryptionKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		u, gerr := c.GetUser(ctx, c.id.PublicKey())
		if gerr != nil {
			return fmt.Errorf("set encryption key: %w", gerr)
		}
		if len(u.EncKey) > 0 {
			return fmt.Errorf("set encryption key: %s: %w", path, ErrEncryptionKeyLost)
		}
		return c.ReplaceEncryptionKey(ctx, path)
	}
	if err != nil {
		return fmt.Errorf("set encryption key: %w", err)
	}
	return c.registerEncryptionKey(ctx, k)
}

// ReplaceEncryptionKey makes a new encryption key, saves it at path (which
// must not exist) and registers it in place of any registered one. Room
// keys sealed to the old key cannot be opened with it: owners must invite
// this identity again (or rekey).
func (c *Conn) ReplaceEncryptionKey(ctx context.Context, path string) error {
	k, err := e2e.GenerateEncryptionKey()
	if err != nil {
		return fmt.Errorf("replace encryption key: %w", err)
	}
	if err := e2e.SaveEncryptionKey(path, k); err != nil {
		return fmt.Errorf("replace encryption key: %w", err)
	}
	return c.registerEncryptionKey(ctx, k)
}

// registerEncryptionKey registers k's public half, bound to this identity
// by its signature, and uses k from now on. A key already registered with a
// numbered binding is used as it is; otherwise the binding is the next
// version after the registered one (see subjects.SetKeyRequest). Another
// device of the same identity registering at the same time makes one of
// them retry, once.
func (c *Conn) registerEncryptionKey(ctx context.Context, k *e2e.EncryptionKey) error {
	for attempt := 0; ; attempt++ {
		me, err := c.GetUser(ctx, c.id.PublicKey())
		if err != nil {
			return fmt.Errorf("set encryption key: %w", err)
		}
		if me.EncKeyVersion > 0 && bytes.Equal(me.EncKey, k.PublicKey()) {
			c.encKey = k
			return nil
		}
		req := subjects.SetKeyRequest{EncKey: k.PublicKey(), EncKeyVersion: me.EncKeyVersion + 1, EncKeyIssuedAt: time.Now().Truncate(time.Second)}
		if req.EncKeySig, err = subjects.SignEncKeyBinding(signer{c.id}, req.EncKey, req.EncKeyVersion, req.EncKeyIssuedAt); err != nil {
			return fmt.Errorf("set encryption key: %w", err)
		}
		err = c.call(ctx, subjects.UsersSetKey, req, nil)
		if errors.Is(err, ErrConflict) && attempt == 0 {
			continue
		}
		if err != nil {
			return err
		}
		c.encKey = k
		return nil
	}
}

// RoomOption adjusts a room that CreateRoom creates.
type RoomOption func(*subjects.CreateRoomRequest)

// WithHistory sets the room's history policy: subjects.HistoryKeep (the
// default: the room log keeps the frames, members read them back and
// subscriptions resume where they stopped) or subjects.HistoryNone
// (members see only what is sent while they are subscribed).
func WithHistory(policy string) RoomOption {
	return func(r *subjects.CreateRoomRequest) { r.History = policy }
}

// WithHistoryMaxAge keeps the room's frames for d at most, less than the
// deployment does (at least a minute).
func WithHistoryMaxAge(d time.Duration) RoomOption {
	return func(r *subjects.CreateRoomRequest) { r.HistoryMaxAge = d.String() }
}

// CreateRoom creates a room owned by the caller: mode subjects.ModeE2E
// (sealed and signed frames; the default) or subjects.ModeCleartext (signed
// only, where policy allows). The room ID is made from the caller's key
// and a random salt (subjects.NewRoomID), so it names its owner: no server
// can pass another key off as the room's owner. In an encrypted room the
// first room key is made here, sealed to the owner and granted to it (see
// e2e.SignGrant); the service never sees the key. opts set the room's
// history (WithHistory, WithHistoryMaxAge).
func (c *Conn) CreateRoom(ctx context.Context, name, mode string, opts ...RoomOption) (subjects.RoomInfo, error) {
	if mode == "" {
		mode = subjects.ModeE2E
	}
	self := c.id.PublicKey()
	id, salt := subjects.NewRoomID(self, mode)
	req := subjects.CreateRoomRequest{RoomID: id, Salt: salt, Name: name, Mode: mode}
	for _, opt := range opts {
		opt(&req)
	}
	const firstEpoch = 1
	var roomKey []byte
	if mode == subjects.ModeE2E {
		if c.encKey == nil {
			return subjects.RoomInfo{}, fmt.Errorf("create room: %w", ErrNoEncryptionKey)
		}
		roomKey = e2e.NewRoomKey()
		sealed, err := e2e.SealRoomKey(c.encKey.PublicKey(), id, firstEpoch, self, roomKey)
		if err != nil {
			return subjects.RoomInfo{}, fmt.Errorf("create room: %w", err)
		}
		grant, err := e2e.SignGrant(c.id, id, firstEpoch, self, roomKey)
		if err != nil {
			return subjects.RoomInfo{}, fmt.Errorf("create room: %w", err)
		}
		req.SealedKey, req.Grant = sealed, grant
	}
	var info subjects.RoomInfo
	if err := c.call(ctx, subjects.RoomsCreate, req, &info); err != nil {
		return subjects.RoomInfo{}, err
	}
	if info.RoomID != id || info.Owner != self || info.Mode != mode || (roomKey != nil && info.Epoch != firstEpoch) {
		return subjects.RoomInfo{}, fmt.Errorf("create room: %w: asked for room %s of %s (%s), the service answered room %s of %s (%s, epoch %d)",
			ErrUntrustedRoom, id, self, mode, info.RoomID, info.Owner, info.Mode, info.Epoch)
	}
	if err := c.keys.learn(info); err != nil {
		return subjects.RoomInfo{}, fmt.Errorf("create room: %w", err)
	}
	if roomKey != nil {
		c.keys.remember(id, firstEpoch, roomKey, req.Grant)
	}
	return info, nil
}

// recipient fetches a user's encryption key; the binding to the identity
// is checked when sealing.
func (c *Conn) recipient(ctx context.Context, pub string) (e2e.Recipient, error) {
	u, err := c.GetUser(ctx, pub)
	if err != nil {
		return e2e.Recipient{}, err
	}
	if len(u.EncKey) == 0 {
		return e2e.Recipient{}, fmt.Errorf("user %s has no encryption key yet: %w", pub, ErrForbidden)
	}
	r := e2e.Recipient{Pub: u.Pub, EncKey: u.EncKey, EncKeySig: u.EncKeySig, EncKeyVersion: u.EncKeyVersion, EncKeyIssuedAt: u.EncKeyIssuedAt}
	if err := c.keys.checkBinding(r); err != nil {
		return e2e.Recipient{}, err
	}
	return r, nil
}

// Invite proposes that pub join a room the caller owns: the invitation is
// pending until pub accepts it (Accept) or declines it (Decline), and
// lapses unanswered after the service's invitation lifetime (seven days by
// default); until accepted it grants pub nothing and counts against none
// of its quotas. The reply lists pub with role subjects.RoleInvited. In an
// encrypted room the current room key is sealed to the invitee's
// (identity-bound) encryption key and granted to it by the owner's
// signature, which the invitee checks before it uses the key and shows in
// every frame it sends; the owner's rekeys seal to pending invitees too.
// The request is signed by the owner end to end. An existing member or a
// pending invitation is ErrConflict; Remove cancels an invitation.
func (c *Conn) Invite(ctx context.Context, roomID, pub string) (subjects.MemberInfo, error) {
	rc, err := c.keys.room(ctx, roomID, true)
	if err != nil {
		return subjects.MemberInfo{}, err
	}
	info := c.keys.info(rc)
	req := subjects.InviteRequest{RoomID: roomID, Pub: pub}
	if info.Mode == subjects.ModeE2E {
		r, err := c.recipient(ctx, pub)
		if err != nil {
			return subjects.MemberInfo{}, err
		}
		key, err := c.keys.roomKey(ctx, roomID, info.Epoch)
		if err != nil {
			return subjects.MemberInfo{}, err
		}
		sealed, err := e2e.SealRoomKeys(roomID, info.Epoch, key, []e2e.Recipient{r})
		if err != nil {
			return subjects.MemberInfo{}, fmt.Errorf("invite: %w", err)
		}
		grant, err := e2e.SignGrant(c.id, roomID, info.Epoch, r.Pub, key)
		if err != nil {
			return subjects.MemberInfo{}, fmt.Errorf("invite: %w", err)
		}
		req.Epoch, req.SealedKey, req.Grant = info.Epoch, sealed[r.Pub], grant
	}
	if err := subjects.SignOwner(signer{c.id}, &req); err != nil {
		return subjects.MemberInfo{}, fmt.Errorf("invite: %w", err)
	}
	var m subjects.MemberInfo
	if err := c.call(ctx, subjects.RoomsInvite, req, &m); err != nil {
		return subjects.MemberInfo{}, err
	}
	c.keys.changed(roomID)
	return m, nil
}

// rekeyBundle makes a fresh room key for the room's next epoch, sealed and
// granted to every member except `except`. Before it seals anything it
// checks every member the service lists (but `except`) against the
// owner's own grants of the current room key: a member without one is a
// ghost someone added behind the owner's back, and the rekey is refused
// with ErrUntrustedMember naming it.
func (c *Conn) rekeyBundle(ctx context.Context, roomID, except string) (subjects.RoomInfo, subjects.RekeyBundle, []byte, error) {
	rc, err := c.keys.room(ctx, roomID, true)
	if err != nil {
		return subjects.RoomInfo{}, subjects.RekeyBundle{}, nil, err
	}
	info := c.keys.info(rc)
	if info.Mode != subjects.ModeE2E {
		return info, subjects.RekeyBundle{}, nil, nil
	}
	self := c.id.PublicKey()
	if info.Owner != self {
		return info, subjects.RekeyBundle{}, nil, fmt.Errorf("rekey room %s: %w: owned by %s", roomID, ErrForbidden, info.Owner)
	}
	current, err := c.keys.roomKey(ctx, roomID, info.Epoch)
	if err != nil {
		return info, subjects.RekeyBundle{}, nil, err
	}
	members, err := c.Members(ctx, roomID)
	if err != nil {
		return info, subjects.RekeyBundle{}, nil, err
	}
	recipients := make([]e2e.Recipient, 0, len(members))
	for _, m := range members {
		if m.Pub == except {
			continue
		}
		if err := e2e.VerifyGrant(self, roomID, info.Epoch, m.Pub, current, m.Grant); err != nil {
			return info, subjects.RekeyBundle{}, nil, c.untrustedMember(ctx, roomID, info.Epoch, m.Pub, err)
		}
		if len(m.EncKey) == 0 {
			return info, subjects.RekeyBundle{}, nil, fmt.Errorf("rekey: member %s has no encryption key yet: %w", m.Pub, ErrForbidden)
		}
		// SealRoomKeys verifies each binding signature before sealing.
		r := e2e.Recipient{Pub: m.Pub, EncKey: m.EncKey, EncKeySig: m.EncKeySig, EncKeyVersion: m.EncKeyVersion, EncKeyIssuedAt: m.EncKeyIssuedAt}
		if err := c.keys.checkBinding(r); err != nil {
			return info, subjects.RekeyBundle{}, nil, fmt.Errorf("rekey: %w", err)
		}
		recipients = append(recipients, r)
	}
	next := info.NextEpoch
	if next == 0 {
		next = info.Epoch + 1
	}
	key := e2e.NewRoomKey()
	sealed, err := e2e.SealRoomKeys(roomID, next, key, recipients)
	if err != nil {
		return info, subjects.RekeyBundle{}, nil, fmt.Errorf("rekey: %w", err)
	}
	grants := make(map[string][]byte, len(recipients))
	for _, r := range recipients {
		if grants[r.Pub], err = e2e.SignGrant(c.id, roomID, next, r.Pub, key); err != nil {
			return info, subjects.RekeyBundle{}, nil, fmt.Errorf("rekey: %w", err)
		}
	}
	return info, subjects.RekeyBundle{FromEpoch: info.Epoch, ToEpoch: next, Keys: sealed, Grants: grants}, key, nil
}

// untrustedMember explains a member whose grant did not verify: if the
// room moved to another epoch meanwhile (a concurrent rekey by another
// device of the owner), the grants listed are of that epoch and the rekey
// conflicts (ErrConflict: retry); otherwise the member is a ghost
// (ErrUntrustedMember).
func (c *Conn) untrustedMember(ctx context.Context, roomID string, epoch uint64, pub string, cause error) error {
	if now, err := c.getRoom(ctx, roomID); err == nil && now.Epoch != epoch {
		return fmt.Errorf("rekey room %s: %w: the room moved from epoch %d to %d meanwhile", roomID, ErrConflict, epoch, now.Epoch)
	}
	return fmt.Errorf("rekey room %s: refusing to seal a new key to %s: %w (the owner never granted it the key of epoch %d; remove it): %w",
		roomID, pub, ErrUntrustedMember, epoch, cause)
}

// Rekey starts a new epoch in an encrypted room the caller owns: a fresh
// room key sealed and granted to every member, once every member is
// checked against the owner's grants (ErrUntrustedMember names one that is
// not). A concurrent rekey or membership change makes it fail with
// ErrConflict; call it again.
func (c *Conn) Rekey(ctx context.Context, roomID string) (subjects.RoomInfo, error) {
	_, bundle, key, err := c.rekeyBundle(ctx, roomID, "")
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if key == nil {
		return subjects.RoomInfo{}, fmt.Errorf("rekey room %s: %w: a cleartext room has no key", roomID, ErrBadRequest)
	}
	req := subjects.RekeyRequest{RoomID: roomID, FromEpoch: bundle.FromEpoch, ToEpoch: bundle.ToEpoch, Keys: bundle.Keys, Grants: bundle.Grants}
	if err := subjects.SignOwner(signer{c.id}, &req); err != nil {
		return subjects.RoomInfo{}, fmt.Errorf("rekey: %w", err)
	}
	var info subjects.RoomInfo
	if err := c.call(ctx, subjects.RoomsRekey, req, &info); err != nil {
		return subjects.RoomInfo{}, err
	}
	return c.rekeyed(roomID, bundle, key, info)
}

// rekeyed records the outcome of this client's rekey: the new key and its
// own grant, then the room's new state.
func (c *Conn) rekeyed(roomID string, bundle subjects.RekeyBundle, key []byte, info subjects.RoomInfo) (subjects.RoomInfo, error) {
	if key != nil {
		if info.Epoch != bundle.ToEpoch {
			return subjects.RoomInfo{}, fmt.Errorf("rekey room %s: %w: keys sealed for epoch %d, the service answered epoch %d", roomID, ErrUntrustedRoom, bundle.ToEpoch, info.Epoch)
		}
		c.keys.remember(roomID, bundle.ToEpoch, key, bundle.Grants[c.id.PublicKey()])
	}
	if err := c.keys.learn(info); err != nil {
		return subjects.RoomInfo{}, err
	}
	return info, nil
}

// Remove removes pub from a room the caller owns, or cancels its pending
// invitation. In an encrypted room the same request rekeys the remaining
// members and invitees (each checked against the
// owner's grants first, as Rekey does; pub itself need not have one, so
// Remove also evicts a ghost), so pub cannot read the next epoch.
func (c *Conn) Remove(ctx context.Context, roomID, pub string) (subjects.RoomInfo, error) {
	info, bundle, key, err := c.rekeyBundle(ctx, roomID, pub)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	req := subjects.RemoveRequest{RoomID: roomID, Pub: pub}
	if info.Mode == subjects.ModeE2E {
		req.Rekey = &bundle
	}
	if err := subjects.SignOwner(signer{c.id}, &req); err != nil {
		return subjects.RoomInfo{}, fmt.Errorf("remove: %w", err)
	}
	var out subjects.RoomInfo
	if err := c.call(ctx, subjects.RoomsRemove, req, &out); err != nil {
		return subjects.RoomInfo{}, err
	}
	return c.rekeyed(roomID, bundle, key, out)
}
