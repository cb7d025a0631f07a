package client

import (
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
// by its signature, and uses k from now on.
func (c *Conn) registerEncryptionKey(ctx context.Context, k *e2e.EncryptionKey) error {
	sig, err := subjects.SignEncKeyBinding(signer{c.id}, k.PublicKey())
	if err != nil {
		return fmt.Errorf("set encryption key: %w", err)
	}
	if err := c.call(ctx, subjects.UsersSetKey, subjects.SetKeyRequest{EncKey: k.PublicKey(), EncKeySig: sig}, nil); err != nil {
		return err
	}
	c.encKey = k
	return nil
}

// PermissionRefreshWait bounds how long CreateRoom waits for the bus to
// refresh the connection's permissions with the new room.
const PermissionRefreshWait = 2 * time.Second

// CreateRoom creates a room owned by the caller: mode subjects.ModeE2E
// (sealed and signed frames; the default) or subjects.ModeCleartext (signed
// only, where policy allows). In an encrypted room the first room key is
// made here and sealed to the owner; the service never sees it.
func (c *Conn) CreateRoom(ctx context.Context, name, mode string) (subjects.RoomInfo, error) {
	if mode == "" {
		mode = subjects.ModeE2E
	}
	req := subjects.CreateRoomRequest{RoomID: subjects.NewRoomID(), Name: name, Mode: mode}
	var roomKey []byte
	if mode == subjects.ModeE2E {
		if c.encKey == nil {
			return subjects.RoomInfo{}, fmt.Errorf("create room: %w", ErrNoEncryptionKey)
		}
		roomKey = e2e.NewRoomKey()
		sealed, err := e2e.SealRoomKey(c.encKey.PublicKey(), req.RoomID, 1, c.id.PublicKey(), roomKey)
		if err != nil {
			return subjects.RoomInfo{}, fmt.Errorf("create room: %w", err)
		}
		req.SealedKey = sealed
	}
	// Joining a room changes this connection's permissions: the bus
	// disconnects it and it reconnects with the room's subject. Wait for
	// that (bounded), so that a Publish right after CreateRoom is allowed.
	refreshed := c.reconnects.wait()
	var info subjects.RoomInfo
	if err := c.call(ctx, subjects.RoomsCreate, req, &info); err != nil {
		return subjects.RoomInfo{}, err
	}
	select {
	case <-refreshed:
	case <-time.After(PermissionRefreshWait):
	case <-ctx.Done():
	}
	c.keys.learn(info)
	if roomKey != nil {
		c.keys.remember(info.RoomID, info.Epoch, roomKey)
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
	return e2e.Recipient{Pub: u.Pub, EncKey: u.EncKey, EncKeySig: u.EncKeySig}, nil
}

// Invite adds pub to a room the caller owns. In an encrypted room the
// current room key is sealed to the invitee's (identity-bound) encryption
// key; the request is signed by the owner end to end.
func (c *Conn) Invite(ctx context.Context, roomID, pub string) (subjects.MemberInfo, error) {
	rc, err := c.keys.room(ctx, roomID, true)
	if err != nil {
		return subjects.MemberInfo{}, err
	}
	req := subjects.InviteRequest{RoomID: roomID, Pub: pub}
	if rc.info.Mode == subjects.ModeE2E {
		r, err := c.recipient(ctx, pub)
		if err != nil {
			return subjects.MemberInfo{}, err
		}
		key, err := c.keys.roomKey(ctx, roomID, rc.info.Epoch)
		if err != nil {
			return subjects.MemberInfo{}, err
		}
		sealed, err := e2e.SealRoomKeys(roomID, rc.info.Epoch, key, []e2e.Recipient{r})
		if err != nil {
			return subjects.MemberInfo{}, fmt.Errorf("invite: %w", err)
		}
		req.Epoch, req.SealedKey = rc.info.Epoch, sealed[r.Pub]
	}
	if err := subjects.SignOwner(signer{c.id}, &req); err != nil {
		return subjects.MemberInfo{}, fmt.Errorf("invite: %w", err)
	}
	var m subjects.MemberInfo
	err = c.call(ctx, subjects.RoomsInvite, req, &m)
	return m, err
}

// rekeyBundle makes a fresh room key for the room's next epoch and seals it
// to every member except `except`.
func (c *Conn) rekeyBundle(ctx context.Context, roomID, except string) (subjects.RoomInfo, subjects.RekeyBundle, []byte, error) {
	rc, err := c.keys.room(ctx, roomID, true)
	if err != nil {
		return subjects.RoomInfo{}, subjects.RekeyBundle{}, nil, err
	}
	info := rc.info
	if info.Mode != subjects.ModeE2E {
		return info, subjects.RekeyBundle{}, nil, nil
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
		if len(m.EncKey) == 0 {
			return info, subjects.RekeyBundle{}, nil, fmt.Errorf("rekey: member %s has no encryption key yet: %w", m.Pub, ErrForbidden)
		}
		// SealRoomKeys verifies each binding signature before sealing.
		recipients = append(recipients, e2e.Recipient{Pub: m.Pub, EncKey: m.EncKey, EncKeySig: m.EncKeySig})
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
	return info, subjects.RekeyBundle{FromEpoch: info.Epoch, ToEpoch: next, Keys: sealed}, key, nil
}

// Rekey starts a new epoch in an encrypted room the caller owns: a fresh
// room key sealed to every member. A concurrent rekey or membership change
// makes it fail with ErrConflict; call it again.
func (c *Conn) Rekey(ctx context.Context, roomID string) (subjects.RoomInfo, error) {
	_, bundle, key, err := c.rekeyBundle(ctx, roomID, "")
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if key == nil {
		return subjects.RoomInfo{}, fmt.Errorf("rekey room %s: %w: a cleartext room has no key", roomID, ErrBadRequest)
	}
	req := subjects.RekeyRequest{RoomID: roomID, FromEpoch: bundle.FromEpoch, ToEpoch: bundle.ToEpoch, Keys: bundle.Keys}
	if err := subjects.SignOwner(signer{c.id}, &req); err != nil {
		return subjects.RoomInfo{}, fmt.Errorf("rekey: %w", err)
	}
	var info subjects.RoomInfo
	if err := c.call(ctx, subjects.RoomsRekey, req, &info); err != nil {
		return subjects.RoomInfo{}, err
	}
	c.keys.remember(roomID, bundle.ToEpoch, key)
	c.keys.learn(info)
	return info, nil
}

// Remove removes pub from a room the caller owns. In an encrypted room the
// same request rekeys the remaining members, so pub cannot read the next
// epoch.
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
	if key != nil {
		c.keys.remember(roomID, bundle.ToEpoch, key)
	}
	c.keys.learn(out)
	return out, nil
}
