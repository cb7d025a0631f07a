package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestRateLimited: a request over the caller's rate limit comes back as
// an *APIError matching ErrTooManyRequests, with the service's retry hint,
// when the context leaves no room to wait; with room, the client waits
// the hint out and the request succeeds.
func TestRateLimited(t *testing.T) {
	const rate = 2 // per second: a hint of up to 500 ms
	n := nodetest.Run(t, func(c *node.Config) { c.Services.RateLimit, c.Services.RateBurst = rate, 1 })
	alice := nodetest.AddUser(t, n, "alice", false)
	ctx := context.Background()
	c, err := client.Connect(ctx, n.ClientURL(), alice)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	// The first request makes alice known (and empties her bucket of 1).
	if _, err := c.ListMyRooms(ctx); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err = c.ListMyRooms(short)
	var api *client.APIError
	if !errors.Is(err, client.ErrTooManyRequests) || !errors.As(err, &api) {
		t.Fatalf("request over the rate = %v, want an *APIError matching ErrTooManyRequests", err)
	}
	if api.RetryAfter <= 0 || api.RetryAfter > time.Second/rate {
		t.Errorf("retry hint %s, want 1ms..%s", api.RetryAfter, time.Second/rate)
	}

	start := time.Now()
	if _, err := c.ListMyRooms(ctx); err != nil {
		t.Fatalf("request with room to wait: %v", err)
	}
	t.Logf("served after %s", time.Since(start))
}
