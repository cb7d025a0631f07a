package kvstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxNonceLen bounds a nonce before it is hashed.
const maxNonceLen = 256

// ClaimNonce records nonce as used, atomically across every connection and
// node: the first claim succeeds, any later claim within the TTL is
// ErrReplay. It fails closed: any backend error is returned and must be
// treated as a rejection.
func (s *Store) ClaimNonce(ctx context.Context, nonce string) error {
	if nonce == "" || len(nonce) > maxNonceLen {
		return fmt.Errorf("%w: nonce must be 1..%d bytes", ErrInvalid, maxNonceLen)
	}
	sum := sha256.Sum256([]byte(nonce))
	key := hex.EncodeToString(sum[:])
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.nonces.Create(ctx, key, nil, jetstream.KeyTTL(s.nonceTTL)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrReplay
		}
		return fmt.Errorf("claim nonce: %w", err)
	}
	return nil
}

// NonceTTL is how long a claimed nonce is remembered (Config.NonceTTL with
// its default applied). A verifier must accept requests for at most this
// long, that is a clock skew of at most NonceTTL/2.
func (s *Store) NonceTTL() time.Duration { return s.nonceTTL }
