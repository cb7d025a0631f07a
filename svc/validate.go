package svc

import (
	"unicode"
	"unicode/utf8"

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

// parseKeys validates a map of sealed keys by member (a rekey bundle) and
// returns it with normalized keys. A key named twice (in two spellings of
// the same user) is refused.
func parseKeys(field string, keys map[string][]byte) (map[string][]byte, error) {
	if len(keys) == 0 {
		return nil, badRequest("%s is required: the new room key sealed to every member", field)
	}
	out := make(map[string][]byte, len(keys))
	for pub, k := range keys {
		n, err := parsePub(field+" key", pub)
		if err != nil {
			return nil, err
		}
		if _, dup := out[n]; dup {
			return nil, badRequest("%s names %s twice", field, n)
		}
		if err := checkSealedKey(field+"["+n+"]", k); err != nil {
			return nil, err
		}
		out[n] = k
	}
	return out, nil
}
