package authcallout

import (
	"crypto/ed25519"
	"fmt"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// newSigner returns a jwt.SignFn over kp's expanded Ed25519 key. nkeys
// re-derives the key from the seed on every Sign, which doubles the cost of
// each JWT; the callout signs two per connection.
func newSigner(kp nkeys.KeyPair) (jwt.SignFn, error) {
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("read issuer seed: %w", err)
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("decode issuer seed: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(raw)
	clear(raw)
	return func(_ string, data []byte) ([]byte, error) {
		return ed25519.Sign(priv, data), nil
	}, nil
}
