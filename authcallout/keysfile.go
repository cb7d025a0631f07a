package authcallout

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/internal/secretfile"
)

// maxKeysFileSize bounds what ReadKeysFile reads: seven seeds, their
// public keys and names are about 1.3 KB.
const maxKeysFileSize = 16 << 10

// keysFile is the JSON form of Keys: the seeds, and the public keys beside
// them so that an operator can match a file with a nats-server
// configuration without decoding seeds.
type keysFile struct {
	Comment     string  `json:"comment"`
	Issuer      seedPub `json:"issuer"`
	XKey        seedPub `json:"xkey,omitzero"`
	CalloutUser seedPub `json:"callout_user"`
	ServiceUser seedPub `json:"service_user"`
	StoreUser   seedPub `json:"store_user,omitzero"`
	RouterUser  seedPub `json:"router_user,omitzero"`
	SystemUser  seedPub `json:"system_user"`
}

type seedPub struct {
	Seed string `json:"seed"`
	Pub  string `json:"pub"`
}

const keysFileComment = "unibus deployment credentials: the NATS keys of the auth callout, the services, the store, the router and the system user. Secret; identical on every unibusd of a deployment. Made by `unibusd nats-config`."

// WriteKeysFile writes k to a new file at path, mode 0600, atomically; it
// never overwrites (an existing path fails with an error matching
// fs.ErrExist). This file is what `unibusd --creds` reads.
func WriteKeysFile(path string, k Keys) error {
	if err := k.valid(); err != nil {
		return err
	}
	var f keysFile
	f.Comment = keysFileComment
	for _, e := range []struct {
		kp  nkeys.KeyPair
		out *seedPub
	}{{k.Issuer, &f.Issuer}, {k.XKey, &f.XKey}, {k.CalloutUser, &f.CalloutUser}, {k.ServiceUser, &f.ServiceUser}, {k.StoreUser, &f.StoreUser}, {k.RouterUser, &f.RouterUser}, {k.SystemUser, &f.SystemUser}} {
		if e.kp == nil {
			continue
		}
		seed, err := e.kp.Seed()
		if err != nil {
			return fmt.Errorf("write keys file: %w", err)
		}
		// Seed returns the key pair's own buffer: not cleared here.
		e.out.Seed, e.out.Pub = string(seed), mustPub(e.kp)
	}
	content, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("write keys file: %w", err)
	}
	content = append(content, '\n')
	defer clear(content)
	if err := secretfile.WriteNew(path, content); err != nil {
		return fmt.Errorf("write keys file %s: %w", path, err)
	}
	return nil
}

// ReadKeysFile reads the keys written by WriteKeysFile. It refuses a file
// that group or others may read, and one whose seeds are missing, of the
// wrong kind, or do not match the public keys beside them.
func ReadKeysFile(path string) (Keys, error) {
	content, err := secretfile.Read(path, maxKeysFileSize)
	defer clear(content)
	if err != nil {
		return Keys{}, fmt.Errorf("read keys file: %w", err)
	}
	var f keysFile
	if err := json.Unmarshal(content, &f); err != nil {
		return Keys{}, fmt.Errorf("%w: keys file %s is not valid JSON: %w", ErrConfigValidation, path, err)
	}
	var k Keys
	for _, e := range []struct {
		name     string
		in       seedPub
		out      *nkeys.KeyPair
		optional bool
	}{
		{"issuer", f.Issuer, &k.Issuer, false},
		{"xkey", f.XKey, &k.XKey, true},
		{"callout_user", f.CalloutUser, &k.CalloutUser, false},
		{"service_user", f.ServiceUser, &k.ServiceUser, false},
		{"store_user", f.StoreUser, &k.StoreUser, true},
		{"router_user", f.RouterUser, &k.RouterUser, true},
		{"system_user", f.SystemUser, &k.SystemUser, false},
	} {
		if e.in.Seed == "" && e.optional {
			continue
		}
		kp, err := nkeys.FromSeed([]byte(e.in.Seed))
		if err != nil {
			return Keys{}, fmt.Errorf("%w: keys file %s: %s: %w", ErrConfigValidation, path, e.name, err)
		}
		if e.in.Pub != "" && mustPub(kp) != e.in.Pub {
			return Keys{}, fmt.Errorf("%w: keys file %s: %s: the seed does not match the public key %s", ErrConfigValidation, path, e.name, e.in.Pub)
		}
		*e.out = kp
	}
	// A file written before the store user, or the router user, had a
	// key of its own.
	for _, d := range []struct {
		kp     *nkeys.KeyPair
		domain string
	}{{&k.StoreUser, storeUserDomain}, {&k.RouterUser, routerUserDomain}} {
		if *d.kp != nil {
			continue
		}
		if *d.kp, err = deriveUser(k.ServiceUser, d.domain); err != nil {
			return Keys{}, fmt.Errorf("keys file %s: %w", path, err)
		}
	}
	if err := k.valid(); err != nil {
		return Keys{}, fmt.Errorf("keys file %s: %w", path, err)
	}
	return k, nil
}

// Domain tags of the keys derived for files older than the key's role.
const (
	storeUserDomain  = "unibus-store-user-v1\n"
	routerUserDomain = "unibus-router-user-v1\n"
)

// deriveUser is a user key of a role that a keys file written before the
// role had a key of its own lacks (the store user, the router user): a
// user key derived from the service user's seed (SHA-256 of the role's
// domain tag and the raw seed), so that every unibusd reading the same
// old file agrees on it. Files written now hold independent keys.
func deriveUser(service nkeys.KeyPair, domain string) (nkeys.KeyPair, error) {
	seed, err := service.Seed()
	if err != nil {
		return nil, fmt.Errorf("derive user key: %w", err)
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("derive user key: %w", err)
	}
	defer clear(raw) // a copy: DecodeSeed decodes into a new buffer
	h := sha256.New()
	h.Write([]byte(domain))
	h.Write(raw)
	sum := h.Sum(nil)
	defer clear(sum)
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, sum)
	if err != nil {
		return nil, fmt.Errorf("derive user key: %w", err)
	}
	return kp, nil
}

// LoadOrCreateKeysFile reads the keys file at path, or, when there is no
// file, generates a fresh set (with an xkey when withXKey) and writes it.
// created says which happened. An existing file is never changed, whatever
// withXKey says.
func LoadOrCreateKeysFile(path string, withXKey bool) (k Keys, created bool, err error) {
	k, err = ReadKeysFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	if k, err = GenerateKeys(withXKey); err != nil {
		return Keys{}, false, err
	}
	if err := WriteKeysFile(path, k); err != nil {
		if errors.Is(err, fs.ErrExist) { // lost a race with another writer: use theirs
			k, err = ReadKeysFile(path)
			return k, false, err
		}
		return Keys{}, false, err
	}
	return k, true, nil
}
