package kvstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
)

// nonceCases are the store suite's cases of this file (see TestStore).
var nonceCases = []storeCase{
	{"Nonces", testNonces},
}

func testNonces(t *testing.T, e *storeEnv) {
	ctx := context.Background()
	cfg := kvstore.Config{NonceTTL: time.Second}
	st1 := e.open(t, cfg)
	// A second store on another connection (to another server when there
	// are several): what one claims, the other sees.
	st2 := e.openElsewhere(t, cfg)
	if err := st1.ClaimNonce(ctx, "n-1"); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	if err := st1.ClaimNonce(ctx, "n-1"); !errors.Is(err, kvstore.ErrReplay) {
		t.Fatalf("replay = %v, want ErrReplay", err)
	}
	if err := st2.ClaimNonce(ctx, "n-1"); !errors.Is(err, kvstore.ErrReplay) {
		t.Fatalf("replay from a second connection = %v, want ErrReplay", err)
	}
	if err := st2.ClaimNonce(ctx, "n-2"); err != nil {
		t.Fatalf("other nonce: %v", err)
	}
	for _, bad := range []string{"", strings.Repeat("x", 300)} {
		if err := st1.ClaimNonce(ctx, bad); !errors.Is(err, kvstore.ErrInvalid) {
			t.Errorf("ClaimNonce(len %d) = %v, want ErrInvalid", len(bad), err)
		}
	}
	// After the TTL the key expires and the nonce may be claimed again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := st1.ClaimNonce(ctx, "n-1")
		if err == nil {
			break
		}
		if !errors.Is(err, kvstore.ErrReplay) {
			t.Fatalf("claim after TTL: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("nonce still claimed 10s after a 1s TTL")
		}
		time.Sleep(200 * time.Millisecond) // poll interval while the TTL runs out
	}
}
