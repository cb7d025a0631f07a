package authcallout

import (
	"fmt"

	"github.com/nats-io/nkeys"
)

// Account names: the only place they are spelled.
const (
	// AccountAuth is where the callout service listens for requests.
	AccountAuth = "AUTH"
	// AccountUnibus holds the services and every peer; JetStream is on.
	AccountUnibus = "UNIBUS"
	// AccountSystem is the system account (CONNZ and KICK requests).
	AccountSystem = "SYS"
)

// Keys are the key pairs a unibus deployment's NATS side is built from.
type Keys struct {
	// Issuer is the account key pair that signs user JWTs and responses.
	Issuer nkeys.KeyPair
	// XKey, when set, encrypts the callout exchange (curve key pair).
	XKey nkeys.KeyPair
	// CalloutUser is the callout service's user in AccountAuth.
	CalloutUser nkeys.KeyPair
	// ServiceUser is the control-plane services' responding user in
	// AccountUnibus: it receives requests and may publish only into the
	// peers' inboxes (see NATSConfig), never into state.
	ServiceUser nkeys.KeyPair
	// StoreUser is the user in AccountUnibus that owns the state: the
	// JetStream API, the KV buckets and the object store, and the streams
	// of room frames and user events (it alone publishes to their
	// subjects). No request reaches it and it answers none.
	StoreUser nkeys.KeyPair
	// RouterUser is the routing service's user in AccountUnibus: it
	// receives the members' sends and may publish only deliveries and
	// replies into inboxes (see NATSConfig), never into state or a room's
	// log.
	RouterUser nkeys.KeyPair
	// SystemUser is the services' user in AccountSystem (kicks).
	SystemUser nkeys.KeyPair
}

// GenerateKeys creates a fresh set of keys; withXKey adds an xkey.
func GenerateKeys(withXKey bool) (Keys, error) {
	var k Keys
	var err error
	if k.Issuer, err = nkeys.CreateAccount(); err != nil {
		return Keys{}, fmt.Errorf("create issuer key: %w", err)
	}
	if withXKey {
		if k.XKey, err = nkeys.CreateCurveKeys(); err != nil {
			return Keys{}, fmt.Errorf("create xkey: %w", err)
		}
	}
	for _, kp := range []*nkeys.KeyPair{&k.CalloutUser, &k.ServiceUser, &k.StoreUser, &k.RouterUser, &k.SystemUser} {
		if *kp, err = nkeys.CreateUser(); err != nil {
			return Keys{}, fmt.Errorf("create service user key: %w", err)
		}
	}
	return k, nil
}

// valid checks that every key is of the kind its role needs.
func (k Keys) valid() error {
	check := func(name string, kp nkeys.KeyPair, prefix nkeys.PrefixByte) error {
		if kp == nil {
			return fmt.Errorf("%w: %s key is missing", ErrConfigValidation, name)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			return fmt.Errorf("%w: %s key: %w", ErrConfigValidation, name, err)
		}
		if nkeys.Prefix(pub) != prefix {
			return fmt.Errorf("%w: %s key %s is not a %s key", ErrConfigValidation, name, pub, prefix)
		}
		return nil
	}
	if err := check("issuer", k.Issuer, nkeys.PrefixByteAccount); err != nil {
		return err
	}
	if k.XKey != nil {
		if err := check("xkey", k.XKey, nkeys.PrefixByteCurve); err != nil {
			return err
		}
	}
	users := []struct {
		name string
		kp   nkeys.KeyPair
	}{{"callout user", k.CalloutUser}, {"service user", k.ServiceUser}, {"store user", k.StoreUser}, {"router user", k.RouterUser}, {"system user", k.SystemUser}}
	seen := make(map[string]string, len(users))
	for _, u := range users {
		if err := check(u.name, u.kp, nkeys.PrefixByteUser); err != nil {
			return err
		}
		// One key in two roles would hold the permissions of both (the
		// server knows a user by its key).
		pub := mustPub(u.kp)
		if other, dup := seen[pub]; dup {
			return fmt.Errorf("%w: the %s and the %s have the same key %s", ErrConfigValidation, other, u.name, pub)
		}
		seen[pub] = u.name
	}
	return nil
}

func mustPub(kp nkeys.KeyPair) string {
	pub, err := kp.PublicKey()
	if err != nil {
		return ""
	}
	return pub
}
