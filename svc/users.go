package svc

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// handlers holds what the operations need.
type handlers struct {
	cfg   Config
	store *kvstore.Store
}

func (h *handlers) addUser(ctx context.Context, c caller, req *subjects.AddUserRequest) (subjects.UserInfo, error) {
	if err := h.requireAdmin(ctx, c, "add users"); err != nil {
		return subjects.UserInfo{}, err
	}
	pub, err := parsePub("pub", req.Pub)
	if err != nil {
		return subjects.UserInfo{}, err
	}
	if err := checkName(req.Name); err != nil {
		return subjects.UserInfo{}, err
	}
	u, err := h.store.AddUser(ctx, kvstore.User{Pub: pub, Name: req.Name, Admin: req.Admin})
	if err != nil {
		return subjects.UserInfo{}, storeError(err, storeMessages{exists: "user " + pub + " is already registered"})
	}
	return userInfo(u), nil
}

// getUser answers what a peer needs to seal a room key to a user (its
// name and encryption key with their binding); the user itself and
// administrators also see the admin flag, revocation and times, which are
// nobody else's business.
func (h *handlers) getUser(ctx context.Context, c caller, req *subjects.GetUserRequest) (subjects.UserInfo, error) {
	pub, err := parsePub("pub", req.Pub)
	if err != nil {
		return subjects.UserInfo{}, err
	}
	u, err := h.store.GetUser(ctx, pub)
	if err != nil {
		return subjects.UserInfo{}, storeError(err, storeMessages{notFound: "user " + pub + " not found"})
	}
	info := userInfo(u)
	if pub == c.pub {
		return info, nil
	}
	if me, err := h.callerUser(ctx, c, storeMessages{}); err == nil && me.Admin && !me.Revoked() {
		return info, nil
	}
	return subjects.UserInfo{
		Pub: info.Pub, Name: info.Name,
		EncKey: info.EncKey, EncKeySig: info.EncKeySig, EncKeyVersion: info.EncKeyVersion, EncKeyIssuedAt: info.EncKeyIssuedAt,
	}, nil
}

func (h *handlers) listUsers(ctx context.Context, c caller, req *subjects.ListUsersRequest) (subjects.ListUsersResponse, error) {
	if err := h.requireAdmin(ctx, c, "list users"); err != nil {
		return subjects.ListUsersResponse{}, err
	}
	after, limit, err := parseUsersPage(req)
	if err != nil {
		return subjects.ListUsersResponse{}, err
	}
	users, more, err := h.store.ListUsersPage(ctx, after, limit)
	if err != nil {
		return subjects.ListUsersResponse{}, storeError(err, storeMessages{})
	}
	// The page also stops where its reply would outgrow the connection's
	// max_payload: a user with an encryption key is about 2 KiB of JSON.
	budget := int(h.cfg.Conn.MaxPayload()) - listReplyOverhead
	out := subjects.ListUsersResponse{Users: make([]subjects.UserInfo, 0, len(users))}
	for _, u := range users {
		info := userInfo(u)
		size, err := jsonSize(info)
		if err != nil {
			return subjects.ListUsersResponse{}, err
		}
		if budget -= size + 1; budget < 0 && len(out.Users) > 0 {
			more = true
			break
		}
		out.Users = append(out.Users, info)
	}
	if more && len(out.Users) > 0 {
		out.Next = out.Users[len(out.Users)-1].Pub
	}
	return out, nil
}

// listReplyOverhead is what a page of users needs beside the users: the
// JSON around them, the next cursor and the reply's headers, rounded up.
const listReplyOverhead = 4 << 10

// jsonSize is the length of v in JSON.
func jsonSize(v any) (int, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encode reply: %w", err)
	}
	return len(b), nil
}

// revokeUser revokes a user. Administrators may revoke themselves, but the
// last unrevoked administrator cannot be revoked (409), so that someone can
// still manage users. The check and the revocation are not atomic: two
// administrators revoking each other at the same moment can both succeed;
// kvstore.Store.EnsureAdmin (unibusd's bootstrap) recovers from that.
func (h *handlers) revokeUser(ctx context.Context, c caller, req *subjects.RevokeUserRequest) (subjects.UserInfo, error) {
	if err := h.requireAdmin(ctx, c, "revoke users"); err != nil {
		return subjects.UserInfo{}, err
	}
	pub, err := parsePub("pub", req.Pub)
	if err != nil {
		return subjects.UserInfo{}, err
	}
	notFound := storeMessages{notFound: "user " + pub + " not found"}
	target, err := h.store.GetUser(ctx, pub)
	if err != nil {
		return subjects.UserInfo{}, storeError(err, notFound)
	}
	if target.Admin && !target.Revoked() {
		users, err := h.store.ListUsers(ctx)
		if err != nil {
			return subjects.UserInfo{}, storeError(err, storeMessages{})
		}
		if !slices.ContainsFunc(users, func(u kvstore.User) bool { return u.Pub != pub && u.Admin && !u.Revoked() }) {
			return subjects.UserInfo{}, conflict(nil, "%s is the last administrator: add another administrator before revoking it", pub)
		}
	}
	u, err := h.store.RevokeUser(ctx, pub)
	if err != nil {
		return subjects.UserInfo{}, storeError(err, notFound)
	}
	if !target.Revoked() {
		h.notify(ctx, subjects.Event{Type: subjects.EventRevoked, By: c.pub}, pub)
	}
	return userInfo(u), nil
}

// maxEncKeyBytes bounds an encryption public key (an MLKEM768-X25519 key
// is 1,216 bytes).
const maxEncKeyBytes = 8 << 10

func (h *handlers) setKey(ctx context.Context, c caller, req *subjects.SetKeyRequest) (subjects.UserInfo, error) {
	switch {
	case len(req.EncKey) == 0:
		return subjects.UserInfo{}, badRequest("enc_key is required")
	case len(req.EncKey) > maxEncKeyBytes:
		return subjects.UserInfo{}, badRequest("enc_key is %d bytes, over the limit of %d", len(req.EncKey), maxEncKeyBytes)
	case len(req.EncKeySig) == 0:
		return subjects.UserInfo{}, badRequest("enc_key_sig is required")
	case req.EncKeyVersion == 0:
		return subjects.UserInfo{}, badRequest("enc_key_version is required: 1 for a first key, else one more than your registered enc_key_version")
	case req.EncKeyIssuedAt.IsZero():
		return subjects.UserInfo{}, badRequest("enc_key_issued_at is required: when the binding was signed")
	case req.EncKeyIssuedAt.After(time.Now().Add(h.cfg.MaxSkew)):
		return subjects.UserInfo{}, badRequest("enc_key_issued_at %s is in the future (beyond the allowed clock skew of %s)", req.EncKeyIssuedAt.UTC().Format(time.RFC3339), h.cfg.MaxSkew)
	}
	if err := subjects.VerifyEncKeyBinding(c.pub, req.EncKey, req.EncKeyVersion, req.EncKeyIssuedAt, req.EncKeySig); err != nil {
		return subjects.UserInfo{}, newError(subjects.CodeBadRequest, err,
			"enc_key_sig does not verify: it must be your identity's signature over the binding of enc_key to %s at enc_key_version and enc_key_issued_at (subjects.SignEncKeyBinding)", c.pub)
	}
	u, err := h.store.SetEncryptionKey(ctx, c.pub, kvstore.EncKeyBinding{
		Key: req.EncKey, Sig: req.EncKeySig, Version: req.EncKeyVersion, IssuedAt: req.EncKeyIssuedAt,
	})
	if err != nil {
		return subjects.UserInfo{}, storeError(err, storeMessages{
			notFound: "user " + c.pub + " not found",
			conflict: fmt.Sprintf("enc_key_version %d is not above your registered binding (a binding is never replaced by an older one): read your user record and sign the next version", req.EncKeyVersion),
		})
	}
	return userInfo(u), nil
}

// requireAdmin refuses (403) a caller who is not an unrevoked
// administrator; what completes "only administrators may …".
//
// In AuthSoft a caller whose checks did not all pass is refused (401)
// whoever it claims to be: soft mode relaxes authentication for peers
// migrating their clients, never for administrator operations.
func (h *handlers) requireAdmin(ctx context.Context, c caller, what string) error {
	if c.softened {
		return unauthenticated(nil, "only administrators may %s, with a valid signed request: the service runs in soft auth mode, which does not relax administrator operations", what)
	}
	deny := forbidden("only administrators may %s", what)
	u, err := h.callerUser(ctx, c, storeMessages{notFound: deny.Message, notFoundCode: subjects.CodeForbidden})
	if err != nil {
		return err
	}
	if !u.Admin || u.Revoked() {
		return deny
	}
	return nil
}

// callerUser returns the caller's record, read by the signed-request stage
// or now (AuthSoft, AuthOff); m says what a missing record means.
func (h *handlers) callerUser(ctx context.Context, c caller, m storeMessages) (kvstore.User, error) {
	if c.user != nil {
		return *c.user, nil
	}
	u, err := h.store.GetUser(ctx, c.pub)
	if err != nil {
		return kvstore.User{}, storeError(err, m)
	}
	return u, nil
}

// userInfo is the wire form of a user.
func userInfo(u kvstore.User) subjects.UserInfo {
	return subjects.UserInfo{
		Pub:            u.Pub,
		Name:           u.Name,
		Admin:          u.Admin,
		EncKey:         u.EncKey,
		EncKeySig:      u.EncKeySig,
		EncKeyVersion:  u.EncKeyVersion,
		EncKeyIssuedAt: u.EncKeyIssuedAt,
		AddedAt:        u.AddedAt,
		Revoked:        u.Revoked(),
		RevokedAt:      u.RevokedAt,
	}
}
