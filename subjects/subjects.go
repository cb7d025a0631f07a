package subjects

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nkeys"
)

// Templates. Subjects are built only from these and validated tokens.
const (
	apiRoot     = "unibus.v1"
	roomPrefix  = apiRoot + ".room."
	inboxPrefix = "_INBOX."
	sep         = "."
	fwc         = ">"
	pwc         = "*"
)

// Limits on subject tokens and room IDs.
const (
	// MaxTokenLen is the longest token, in bytes, that ValidateToken accepts.
	MaxTokenLen = 128

	// MaxRoomIDLen is the longest room ID, in bytes, that ValidateRoomID
	// accepts. IDs made by NewRoomID are 22 bytes long.
	MaxRoomIDLen = 64
)

// The control-plane services: their micro names (Config.Name) and groups,
// the subject prefixes "unibus.v1.users", "unibus.v1.rooms" and
// "unibus.v1.blobs". A service adds its group with AddGroup(UsersGroup) and
// its endpoints with the Endpoint… names, which yields exactly the subject
// constants below.
const (
	UsersService = "unibus-users"
	RoomsService = "unibus-rooms"
	BlobsService = "unibus-blobs"

	UsersGroup = apiRoot + ".users"
	RoomsGroup = apiRoot + ".rooms"
	BlobsGroup = apiRoot + ".blobs"
)

// Micro endpoint names: the last token of a control-plane subject. A name is
// unique within a service, not across services ("get" exists in all three);
// Endpoints says which service has which.
const (
	EndpointAdd     = "add"
	EndpointGet     = "get"
	EndpointList    = "list"
	EndpointRevoke  = "revoke"
	EndpointSetKey  = "setkey"
	EndpointCreate  = "create"
	EndpointInvite  = "invite"
	EndpointAccept  = "accept"
	EndpointDecline = "decline"
	EndpointRemove  = "remove"
	EndpointLeave   = "leave"
	EndpointMembers = "members"
	EndpointMine    = "mine"
	EndpointRekey   = "rekey"
	EndpointKey     = "key"
	EndpointPut     = "put"
	EndpointHistory = "history"
	EndpointEvents  = "events"
)

// Control-plane subjects, group + "." + endpoint name: Endpoints (and the
// table in the package documentation) says what each one does.
const (
	UsersAdd    = UsersGroup + sep + EndpointAdd
	UsersGet    = UsersGroup + sep + EndpointGet
	UsersList   = UsersGroup + sep + EndpointList
	UsersRevoke = UsersGroup + sep + EndpointRevoke
	UsersSetKey = UsersGroup + sep + EndpointSetKey
	UsersEvents = UsersGroup + sep + EndpointEvents

	RoomsCreate  = RoomsGroup + sep + EndpointCreate
	RoomsGet     = RoomsGroup + sep + EndpointGet
	RoomsInvite  = RoomsGroup + sep + EndpointInvite
	RoomsAccept  = RoomsGroup + sep + EndpointAccept
	RoomsDecline = RoomsGroup + sep + EndpointDecline
	RoomsRemove  = RoomsGroup + sep + EndpointRemove
	RoomsLeave   = RoomsGroup + sep + EndpointLeave
	RoomsMembers = RoomsGroup + sep + EndpointMembers
	RoomsMine    = RoomsGroup + sep + EndpointMine
	RoomsRekey   = RoomsGroup + sep + EndpointRekey
	RoomsKey     = RoomsGroup + sep + EndpointKey
	RoomsHistory = RoomsGroup + sep + EndpointHistory

	BlobsPut = BlobsGroup + sep + EndpointPut
	BlobsGet = BlobsGroup + sep + EndpointGet
)

// Wildcards for permissions and subscriptions.
const (
	// UsersAll is "unibus.v1.users.>", every users-service subject.
	UsersAll = UsersGroup + sep + fwc
	// RoomsAll is "unibus.v1.rooms.>", every rooms-service subject.
	RoomsAll = RoomsGroup + sep + fwc
	// BlobsAll is "unibus.v1.blobs.>", every blobs-service subject.
	BlobsAll = BlobsGroup + sep + fwc
)

// System subjects that peer permissions refer to (to deny them, or to allow
// $SRV to admins so that "nats micro ls/info/stats" works).
const (
	// ServiceAPIAll is "$SRV.>", micro service discovery and stats.
	ServiceAPIAll = "$SRV" + sep + fwc
	// JetStreamAll is "$JS.>", the JetStream API.
	JetStreamAll = "$JS" + sep + fwc
	// KVAll is "$KV.>", direct access to JetStream KV buckets.
	KVAll = "$KV" + sep + fwc
	// ObjectStoreAll is "$O.>", direct access to JetStream object stores.
	ObjectStoreAll = "$O" + sep + fwc
)

// ValidateToken returns an error unless tok is safe as one token of a
// subject: non-empty, at most MaxTokenLen bytes, valid UTF-8, and free of '.', '*',
// '>', whitespace and control characters. The error matches ErrInvalidToken
// and says what is wrong with which token.
func ValidateToken(tok string) error {
	if reason := tokenProblem(tok); reason != "" {
		return &invalidError{kind: ErrInvalidToken, value: tok, reason: reason}
	}
	return nil
}

// tokenProblem returns why tok is not a valid token, or "" if it is.
func tokenProblem(tok string) string {
	switch {
	case tok == "":
		return "empty"
	case len(tok) > MaxTokenLen:
		return fmt.Sprintf("longer than %d bytes", MaxTokenLen)
	case !utf8.ValidString(tok):
		return "not valid UTF-8"
	}
	for _, r := range tok {
		switch {
		case r == '.' || r == '*' || r == '>':
			return fmt.Sprintf("contains %q", r)
		case unicode.IsSpace(r):
			return fmt.Sprintf("contains whitespace %U", r)
		case unicode.IsControl(r):
			return fmt.Sprintf("contains control character %U", r)
		}
	}
	return ""
}

// RoomSaltLen is the length of a room's salt (CreateRoomRequest.Salt,
// RoomInfo.Salt): the random part of its ID.
const RoomSaltLen = 16

// roomIDDomain starts the bytes a room ID hashes.
const roomIDDomain = "unibus-room-id-v1\n"

// RoomIDFor returns the ID of the room that owner creates in mode
// (ModeE2E or ModeCleartext) with salt: the first 16 bytes of
// SHA-256(roomIDDomain, owner, '\n', mode, '\n', salt) as unpadded
// base64url, 22 characters of [A-Za-z0-9_-]. The ID thus names its owner and
// its mode: whoever knows the salt checks that a room claimed to be owner's
// really is, and is of the mode claimed (CheckRoomOwner), so a server can
// neither swap a room's owner for a key of its own nor present an
// encrypted room as a cleartext one (whose members would then publish in
// the clear); and no one can choose an ID that reads like a name.
func RoomIDFor(owner, mode string, salt []byte) string {
	h := sha256.New()
	h.Write([]byte(roomIDDomain))
	h.Write([]byte(owner))
	h.Write([]byte{'\n'})
	h.Write([]byte(mode))
	h.Write([]byte{'\n'})
	h.Write(salt)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

// NewRoomID returns a new ID for a room of owner in mode, and the salt it
// was made with (see RoomIDFor): RoomSaltLen bytes from crypto/rand, drawn
// again until the ID does not start with '-', which reads as a flag on
// command lines (one in 64 would).
func NewRoomID(owner, mode string) (id string, salt []byte) {
	salt = make([]byte, RoomSaltLen)
	for {
		// crypto/rand.Read never returns an error; it crashes the program
		// if the system's randomness is unavailable.
		_, _ = rand.Read(salt)
		if id := RoomIDFor(owner, mode, salt); id[0] != '-' {
			return id, salt
		}
	}
}

// CheckRoomOwner returns an error matching ErrInvalidRoomID unless roomID is
// RoomIDFor(owner, mode, salt) with a salt of RoomSaltLen bytes: the check a
// service makes when a room is created and a client makes before it trusts
// a room's owner and mode.
func CheckRoomOwner(roomID, owner, mode string, salt []byte) error {
	switch {
	case len(salt) != RoomSaltLen:
		return &invalidError{kind: ErrInvalidRoomID, value: roomID, reason: fmt.Sprintf("salt of %d bytes, want %d", len(salt), RoomSaltLen)}
	case RoomIDFor(owner, mode, salt) != roomID:
		return &invalidError{kind: ErrInvalidRoomID, value: roomID, reason: "not derived from its owner's key, mode and salt (see RoomIDFor)"}
	}
	return nil
}

// ValidateRoomID returns an error unless id is a room ID: a valid token (see
// ValidateToken) of 1 to MaxRoomIDLen characters from [A-Za-z0-9_-], which
// also makes it a valid JetStream KV key token. Every error matches
// ErrInvalidRoomID; one for an ID that is not even a safe subject token also
// matches ErrInvalidToken.
func ValidateRoomID(id string) error {
	if reason := tokenProblem(id); reason != "" {
		return &invalidError{kind: ErrInvalidRoomID, value: id, reason: reason, also: ErrInvalidToken}
	}
	if len(id) > MaxRoomIDLen {
		return &invalidError{kind: ErrInvalidRoomID, value: id, reason: fmt.Sprintf("longer than %d bytes", MaxRoomIDLen)}
	}
	for _, r := range id {
		if r >= utf8.RuneSelf || !isRoomIDByte(byte(r)) {
			return &invalidError{kind: ErrInvalidRoomID, value: id, reason: fmt.Sprintf("contains %q (allowed: A-Z a-z 0-9 _ -)", r)}
		}
	}
	return nil
}

func isRoomIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// Room returns the subject of a room's frames, "unibus.v1.room.<roomID>",
// after validating roomID with ValidateRoomID.
func Room(roomID string) (string, error) {
	if err := ValidateRoomID(roomID); err != nil {
		return "", err
	}
	return roomPrefix + roomID, nil
}

// RoomIDFromSubject returns the room ID of a room frame subject, the reverse
// of Room. It is strict: the subject must be exactly the room prefix followed
// by one valid room ID. The error matches ErrInvalidSubject and, when the
// last token is at fault, ErrInvalidRoomID.
func RoomIDFromSubject(subject string) (string, error) {
	id, ok := strings.CutPrefix(subject, roomPrefix)
	if !ok {
		return "", &invalidError{kind: ErrInvalidSubject, value: subject, reason: "not a room subject (want " + roomPrefix + "<room id>)"}
	}
	if err := ValidateRoomID(id); err != nil {
		return "", fmt.Errorf("%w %s: %w", ErrInvalidSubject, quote(subject), err)
	}
	return id, nil
}

// Lengths of the text forms of nkeys (base32 without padding).
const (
	// publicKeyLen is the length of a public key: a prefix byte, the
	// Ed25519 public key and a CRC-16.
	publicKeyLen = 56
	// seedLen is the length of a seed: two prefix bytes, the Ed25519 seed
	// and a CRC-16.
	seedLen = 58
	// privateKeyLen is the length of a private key: a prefix byte, the
	// Ed25519 private key and a CRC-16.
	privateKeyLen = 108
)

// NormalizeUserKey returns the canonical form of a user public key: s with
// surrounding space trimmed, upper-cased, and checked to be an nkey user
// public key (U…). The error matches ErrInvalidUserKey; for a valid key of
// another kind (an account key A…, say) it names both kinds, and for a seed
// or private key it never repeats the value, even with a typo or with more
// pasted around it.
func NormalizeUserKey(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", &invalidError{kind: ErrInvalidUserKey, reason: "empty", hide: true}
	}
	if len(s) > MaxTokenLen {
		// Perhaps a seed with more pasted around it: never echo it.
		return "", &invalidError{kind: ErrInvalidUserKey, reason: fmt.Sprintf("longer than %d bytes", MaxTokenLen), hide: true}
	}
	key := strings.ToUpper(s)
	// The length check matters: nkeys, through encoding/base32, ignores
	// one or three characters after a valid key, so "U…" + "A" would
	// otherwise be a second spelling of the same key.
	if len(key) == publicKeyLen && nkeys.IsValidPublicUserKey(key) {
		return key, nil
	}
	if mayBeSecret(key) {
		return "", &invalidError{kind: ErrInvalidUserKey, reason: "looks like a seed or private key, want a user public key (U...)", hide: true}
	}
	if len(key) == publicKeyLen && nkeys.IsValidPublicKey(key) {
		kind := nkeys.Prefix(key).String()
		return "", &invalidError{kind: ErrInvalidUserKey, value: s, reason: "is " + article(kind) + " " + kind + " key, want a user key (U...)"}
	}
	return "", &invalidError{kind: ErrInvalidUserKey, value: s, reason: "not a valid nkey user public key"}
}

// mayBeSecret reports whether the upper-cased key might hold a seed (S…) or
// a private key (P…): its first letter is an S or a P (a seed with a typo,
// or in quotes), or it holds a valid one anywhere.
func mayBeSecret(key string) bool {
	if i := strings.IndexFunc(key, func(r rune) bool { return 'A' <= r && r <= 'Z' }); i >= 0 && (key[i] == 'S' || key[i] == 'P') {
		return true
	}
	for i := range len(key) {
		switch {
		case key[i] == 'S' && i+seedLen <= len(key):
			if _, _, err := nkeys.DecodeSeed([]byte(key[i : i+seedLen])); err == nil {
				return true
			}
		case key[i] == 'P' && i+privateKeyLen <= len(key):
			if _, err := nkeys.Decode(nkeys.PrefixBytePrivate, []byte(key[i:i+privateKeyLen])); err == nil {
				return true
			}
		}
	}
	return false
}

// article returns the indefinite article for a key kind.
func article(kind string) string {
	switch kind[0] {
	case 'a', 'e', 'i', 'o', 'u', 'x': // "an x25519 key"
		return "an"
	}
	return "a"
}

// InboxPrefix returns the inbox prefix of a user, "_INBOX.<pub>", for
// nats.go's nats.CustomInboxPrefix option. pub is normalized with
// NormalizeUserKey first.
func InboxPrefix(pub string) (string, error) {
	key, err := NormalizeUserKey(pub)
	if err != nil {
		return "", err
	}
	return inboxPrefix + key, nil
}

// InboxAll returns the wildcard that covers a user's inboxes,
// "_INBOX.<pub>.>", for subscribe permissions. pub is normalized with
// NormalizeUserKey first.
func InboxAll(pub string) (string, error) {
	prefix, err := InboxPrefix(pub)
	if err != nil {
		return "", err
	}
	return prefix + sep + fwc, nil
}

// InboxesAll is "_INBOX.>", every peer's inboxes: the only subjects the
// control plane's responding connection may publish to (its permissions
// in the NATS configuration).
const InboxesAll = inboxPrefix + fwc

// InboxOwner returns the user whose inbox reply is: reply must be
// "_INBOX.<pub>.<token>[.<token>…]" with pub a user public key in its
// canonical form (as InboxPrefix builds it) and every token non-empty and
// free of wildcards and whitespace. Anything else, a subject in a bucket
// ("$KV.…"), the JetStream API, a room, or an inbox without a key, is
// ErrInvalidSubject. The services answer a request only into the inbox of
// the identity that signed it, so this is how they find whose it is.
func InboxOwner(reply string) (string, error) {
	rest, ok := strings.CutPrefix(reply, inboxPrefix)
	if !ok || len(rest) < publicKeyLen+2 || rest[publicKeyLen] != '.' {
		return "", fmt.Errorf("%w %s: not a peer inbox (%s<user key>.…)", ErrInvalidSubject, quote(reply), inboxPrefix)
	}
	pub := rest[:publicKeyLen]
	if !nkeys.IsValidPublicUserKey(pub) || strings.ToUpper(pub) != pub {
		return "", fmt.Errorf("%w %s: the inbox names no user key", ErrInvalidSubject, quote(reply))
	}
	for tok := range strings.SplitSeq(rest[publicKeyLen+1:], sep) {
		if tok == "" || tok == fwc || tok == pwc || strings.ContainsFunc(tok, unicode.IsSpace) {
			return "", fmt.Errorf("%w %s: an inbox token is empty or a wildcard", ErrInvalidSubject, quote(reply))
		}
	}
	return pub, nil
}
