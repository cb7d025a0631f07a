package natstest

import (
	"testing"

	"github.com/nats-io/nkeys"
)

// NewKey returns a fresh key pair of the kind create makes (nkeys.CreateUser,
// nkeys.CreateAccount, ...) and its public key.
func NewKey(t testing.TB, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatalf("create key: %v", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatalf("public key: %v", err)
	}
	return kp, pub
}

// NewUserKey returns the public key of a fresh user key pair.
func NewUserKey(t testing.TB) string {
	t.Helper()
	_, pub := NewKey(t, nkeys.CreateUser)
	return pub
}
