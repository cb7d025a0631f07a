package svc

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
)

// Limits on request fields, beyond the body size.
const (
	// MaxNameBytes bounds a display name (users and rooms).
	MaxNameBytes = 128
	// MaxSealedKeyBytes bounds one sealed room key (an MLKEM768-X25519
	// sealed key is about 1.1 KiB).
	MaxSealedKeyBytes = 16 << 10
)

// The errors below are 400s whose messages repeat the validation errors of
// package subjects: those are written for humans, name the rejected value
// and never echo secrets.

// parsePub validates and normalizes a user public key in field.
func parsePub(field, s string) (string, error) {
	if s == "" {
		return "", badRequest("%s is required", field)
	}
	pub, err := subjects.NormalizeUserKey(s)
	if err != nil {
		return "", newError(subjects.CodeBadRequest, err, "%s: %s", field, err.Error())
	}
	return pub, nil
}

// parseUsersPage validates a UsersList request: after is "" or a
// normalized user key, and limit is within 1..subjects.MaxListUsersLimit,
// subjects.DefaultListUsersLimit when the request leaves it 0.
func parseUsersPage(req *subjects.ListUsersRequest) (after string, limit int, err error) {
	if req.After != "" {
		if after, err = parsePub("after", req.After); err != nil {
			return "", 0, err
		}
	}
	switch limit = req.Limit; {
	case limit == 0:
		limit = subjects.DefaultListUsersLimit
	case limit < 0 || limit > subjects.MaxListUsersLimit:
		return "", 0, badRequest("limit must be between 1 and %d, not %d", subjects.MaxListUsersLimit, limit)
	}
	return after, limit, nil
}

// parseRoomID validates the room_id field.
func parseRoomID(id string) (string, error) {
	if id == "" {
		return "", badRequest("room_id is required")
	}
	if err := subjects.ValidateRoomID(id); err != nil {
		return "", newError(subjects.CodeBadRequest, err, "room_id: %s", err.Error())
	}
	return id, nil
}

// checkName validates an optional display name: bounded, UTF-8, and free
// of control characters and of invisible format characters (Unicode
// category Cf: zero-width spaces and joiners, bidirectional overrides and
// isolates), which would let one name pass for another on screen (a room
// "ops" beside "o\u200bps", or text that displays reversed).
func checkName(name string) error {
	switch {
	case len(name) > MaxNameBytes:
		return badRequest("name is %d bytes, over the limit of %d", len(name), MaxNameBytes)
	case !utf8.ValidString(name):
		return badRequest("name is not valid UTF-8")
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return badRequest("name contains control character %U", r)
		}
		if unicode.Is(unicode.Cf, r) {
			return badRequest("name contains invisible format character %U (zero-width or bidirectional)", r)
		}
	}
	return nil
}

// checkSealedKey validates a required sealed key in field.
func checkSealedKey(field string, k []byte) error {
	switch {
	case len(k) == 0:
		return badRequest("%s is required", field)
	case len(k) > MaxSealedKeyBytes:
		return badRequest("%s is %d bytes, over the limit of %d", field, len(k), MaxSealedKeyBytes)
	}
	return nil
}

// checkGrant validates a required key grant in field: exactly
// subjects.GrantLen bytes. The service cannot check the signature (it
// never knows the room key the grant commits to); members do.
func checkGrant(field string, g []byte) error {
	switch {
	case len(g) == 0:
		return badRequest("%s is required: the owner's key grant, a signature of %d bytes", field, subjects.GrantLen)
	case len(g) != subjects.GrantLen:
		return badRequest("%s is %d bytes, want %d (the owner's key grant, a signature)", field, len(g), subjects.GrantLen)
	}
	return nil
}

// parseKeys validates a rekey bundle, sealed keys by member (keysField)
// and the owner's grants of them (grantsField), and returns them together
// with normalized member keys. Both maps must name exactly the same
// members; a member named twice in one map (in two spellings of the same
// user) is refused.
func parseKeys(keysField string, keys map[string][]byte, grantsField string, grants map[string][]byte) (map[string]kvstore.SealedKey, error) {
	if len(keys) == 0 {
		return nil, badRequest("%s is required: the new room key sealed to every member", keysField)
	}
	out := make(map[string]kvstore.SealedKey, len(keys))
	for pub, k := range keys {
		n, err := parsePub(keysField+" key", pub)
		if err != nil {
			return nil, err
		}
		if _, dup := out[n]; dup {
			return nil, badRequest("%s names %s twice", keysField, n)
		}
		if err := checkSealedKey(keysField+"["+n+"]", k); err != nil {
			return nil, err
		}
		out[n] = kvstore.SealedKey{Sealed: k}
	}
	granted := make(map[string]bool, len(grants))
	for pub, g := range grants {
		n, err := parsePub(grantsField+" key", pub)
		if err != nil {
			return nil, err
		}
		if granted[n] {
			return nil, badRequest("%s names %s twice", grantsField, n)
		}
		granted[n] = true
		k, ok := out[n]
		if !ok {
			return nil, badRequest("%s has a grant for %s, which %s does not name: grant exactly the members you seal the key to", grantsField, n, keysField)
		}
		if err := checkGrant(grantsField+"["+n+"]", g); err != nil {
			return nil, err
		}
		k.Grant = g
		out[n] = k
	}
	if len(granted) != len(out) {
		missing := make([]string, 0, len(out)-len(granted))
		for n := range out {
			if !granted[n] {
				missing = append(missing, n)
			}
		}
		return nil, badRequest("%s has no grant for %s, which %s names: every sealed key needs the owner's grant", grantsField, listSome(missing), keysField)
	}
	return out, nil
}

// listSome joins the first few of pubs, sorted, for a message, and counts
// the rest, so that a message stays short however many are named.
func listSome(pubs []string) string {
	const most = 3
	slices.Sort(pubs)
	if len(pubs) <= most {
		return strings.Join(pubs, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(pubs[:most], ", "), len(pubs)-most)
}
