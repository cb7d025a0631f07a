package kvstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/subjects"
)

// User is one allowlisted identity.
type User struct {
	// Pub is the nkey user public key (U…), the endpoint ID.
	Pub  string `json:"pub"`
	Name string `json:"name,omitempty"`
	// Admin users may manage users and use $SRV.> for micro discovery.
	Admin bool `json:"admin,omitempty"`
	// EncKey is the user's HPKE public key for receiving room keys, and
	// EncKeySig the identity's signature binding it (verified by svc) at
	// EncKeyVersion and EncKeyIssuedAt (see subjects.SetKeyRequest).
	EncKey         []byte     `json:"enc_key,omitempty"`
	EncKeySig      []byte     `json:"enc_key_sig,omitempty"`
	EncKeyVersion  uint64     `json:"enc_key_version,omitempty"`
	EncKeyIssuedAt time.Time  `json:"enc_key_issued_at,omitzero"`
	AddedAt        time.Time  `json:"added_at"`
	RevokedAt      *time.Time `json:"revoked_at,omitempty"`
}

// EncKeyBinding is an encryption key with the identity's numbered binding
// over it, as SetEncryptionKey stores it.
type EncKeyBinding struct {
	Key      []byte
	Sig      []byte
	Version  uint64
	IssuedAt time.Time
}

// Revoked reports whether the user has been revoked.
func (u User) Revoked() bool { return u.RevokedAt != nil }

// normalizeUser validates and normalizes a user public key.
func normalizeUser(pub string) (string, error) {
	n, err := subjects.NormalizeUserKey(pub)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return n, nil
}

// AddUser allowlists a user. A duplicate is ErrExists; an invalid key is
// ErrInvalid. The stored user is returned.
func (s *Store) AddUser(ctx context.Context, u User) (User, error) {
	pub, err := normalizeUser(u.Pub)
	if err != nil {
		return User{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	u.Pub = pub
	u.AddedAt = s.now().UTC()
	u.RevokedAt = nil
	if err := createJSON(ctx, s.users, pub, u); err != nil {
		if errors.Is(err, ErrExists) {
			return User{}, fmt.Errorf("add user %s: %w", pub, ErrExists)
		}
		return User{}, fmt.Errorf("add user: %w", err)
	}
	return u, nil
}

// GetUser returns a user, revoked or not.
func (s *Store) GetUser(ctx context.Context, pub string) (User, error) {
	pub, err := normalizeUser(pub)
	if err != nil {
		return User{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	u, _, err := s.getUser(ctx, pub)
	return u, err
}

func (s *Store) getUser(ctx context.Context, pub string) (User, uint64, error) {
	u, rev, err := getRecord[User](ctx, s, s.users, pub)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return User{}, 0, fmt.Errorf("user %s: %w", pub, err)
		}
		return User{}, 0, fmt.Errorf("get user: %w", err)
	}
	return u, rev, nil
}

// ListUsers returns every user, revoked ones included.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	entries, err := listEntries(ctx, s.users, ">")
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return decodeRecords[User](s, BucketUsers, entries), nil
}

// ListUsersPage returns, in order of their keys, at most limit users whose
// keys sort after after ("" for the first page), and whether more follow.
// It lists the bucket's keys (no values) and reads only the page's users,
// so a page costs one key listing and one direct get, whatever its place.
func (s *Store) ListUsersPage(ctx context.Context, after string, limit int) ([]User, bool, error) {
	if limit < 1 {
		return nil, false, fmt.Errorf("%w: a page holds at least one user, not %d", ErrInvalid, limit)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	entries, err := listEntries(ctx, s.users, ">", jetstream.MetaOnly())
	if err != nil {
		return nil, false, fmt.Errorf("list users: %w", err)
	}
	keys := make([]string, 0, len(entries))
	for _, e := range entries {
		if e.key > after {
			keys = append(keys, e.key)
		}
	}
	slices.Sort(keys)
	more := len(keys) > limit
	keys = keys[:min(limit, len(keys))]
	byKey, err := s.GetUsers(ctx, keys)
	if err != nil {
		return nil, false, fmt.Errorf("list users: %w", err)
	}
	users := make([]User, 0, len(keys))
	for _, k := range keys {
		if u, ok := byKey[k]; ok { // absent only if deleted since the listing
			users = append(users, u)
		}
	}
	return users, more, nil
}

// RevokeUser marks a user revoked. Revoking twice is not an error.
func (s *Store) RevokeUser(ctx context.Context, pub string) (User, error) {
	return s.updateUser(ctx, pub, func(u *User) error {
		if u.RevokedAt == nil {
			now := s.now().UTC()
			u.RevokedAt = &now
		}
		return nil
	})
}

// SetEncryptionKey stores the user's HPKE public key and the identity's
// binding over it; the caller verifies the signature. Versions only go up:
// a binding whose version is not above the stored one is ErrStaleBinding,
// except the stored binding itself, which changes nothing.
func (s *Store) SetEncryptionKey(ctx context.Context, pub string, b EncKeyBinding) (User, error) {
	if len(b.Key) == 0 || len(b.Sig) == 0 || b.Version == 0 {
		return User{}, fmt.Errorf("%w: encryption key, binding signature and a binding version of at least 1 are required", ErrInvalid)
	}
	var unchanged User
	u, err := s.updateUser(ctx, pub, func(u *User) error {
		switch {
		case b.Version > u.EncKeyVersion:
		case b.Version == u.EncKeyVersion && slices.Equal(b.Key, u.EncKey) && slices.Equal(b.Sig, u.EncKeySig):
			unchanged = *u
			return errUnchanged
		default:
			return fmt.Errorf("%w: binding version %d is not above the registered version %d", ErrStaleBinding, b.Version, u.EncKeyVersion)
		}
		u.EncKey, u.EncKeySig = b.Key, b.Sig
		u.EncKeyVersion, u.EncKeyIssuedAt = b.Version, b.IssuedAt.UTC()
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return unchanged, nil
	}
	return u, err
}

// errUnchanged stops an update that would write what is stored.
var errUnchanged = errors.New("unchanged")

// updateUser applies change with compare-and-set, retrying on conflicts.
func (s *Store) updateUser(ctx context.Context, pub string, change func(*User) error) (User, error) {
	pub, err := normalizeUser(pub)
	if err != nil {
		return User{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for {
		u, rev, err := s.getUser(ctx, pub)
		if err != nil {
			return User{}, err
		}
		if err := change(&u); err != nil {
			return User{}, err
		}
		_, err = updateJSON(ctx, s.users, pub, u, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return User{}, fmt.Errorf("update user: %w", err)
		}
		return u, nil
	}
}

// GetUserFromLeader is GetUser read from the users stream's leader, and
// only while that leader hears a majority of the replicas: never stale,
// and failing closed (ErrNoQuorum or a timeout) when a cluster has lost
// quorum. The auth callout admits through it.
func (s *Store) GetUserFromLeader(ctx context.Context, pub string) (User, error) {
	pub, err := normalizeUser(pub)
	if err != nil {
		return User{}, err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.checkUsersQuorum(ctx); err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	data, _, err := getFromLeader(ctx, s.js.Conn(), BucketUsers, pub)
	if errors.Is(err, ErrNotFound) {
		return User{}, fmt.Errorf("user %s: %w", pub, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	u, err := decodeRecord[User](s, BucketUsers, pub, data)
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// EnsureAdmin bootstraps an admin: it adds pub as an admin, or makes an
// existing unrevoked user an admin. A revoked user stays revoked (ErrInvalid).
func (s *Store) EnsureAdmin(ctx context.Context, pub, name string) (User, error) {
	u, err := s.AddUser(ctx, User{Pub: pub, Name: name, Admin: true})
	if !errors.Is(err, ErrExists) {
		return u, err
	}
	return s.updateUser(ctx, pub, func(u *User) error {
		if u.Revoked() {
			return fmt.Errorf("%w: user %s is revoked and cannot be made admin", ErrInvalid, u.Pub)
		}
		u.Admin = true
		return nil
	})
}

// GetUsers returns the users among pubs that exist, keyed by public key, in
// one direct get (a room's members when sealing a rekey).
func (s *Store) GetUsers(ctx context.Context, pubs []string) (map[string]User, error) {
	keys := make([]string, 0, len(pubs))
	for _, p := range pubs {
		n, err := normalizeUser(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, n)
	}
	out := make(map[string]User, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	entries, err := getLast(ctx, s.js, BucketUsers, keys)
	if err != nil {
		return nil, fmt.Errorf("get users: %w", err)
	}
	for _, u := range decodeRecords[User](s, BucketUsers, entries) {
		out[u.Pub] = u
	}
	return out, nil
}
