package kvstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/tests/natstest"
)

// The tests of the store that do not run on every backend of the suite
// (TestStore): invalid configurations, and the failures of a backend.

func TestConfigValidation(t *testing.T) {
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	for _, tc := range []struct {
		name string
		cfg  kvstore.Config
	}{
		{"zero replicas", kvstore.Config{}},
		{"six replicas", kvstore.Config{Replicas: 6}},
		{"negative replicas", kvstore.Config{Replicas: -1}},
		{"negative timeout", kvstore.Config{Replicas: 1, OpTimeout: -time.Second}},
		{"nonce ttl below a second", kvstore.Config{Replicas: 1, NonceTTL: 500 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := kvstore.Open(context.Background(), js, tc.cfg)
			if !errors.Is(err, kvstore.ErrConfigValidation) {
				t.Fatalf("Open(%+v) = %v, want ErrConfigValidation", tc.cfg, err)
			}
		})
	}
	// Nothing was created by the refused configurations.
	names := js.KeyValueStoreNames(context.Background())
	for n := range names.Name() {
		t.Errorf("bucket %s created by an invalid configuration", n)
	}
}

func TestFailClosedWhenServerDown(t *testing.T) {
	ctx := context.Background()
	srv := natstest.RunServer(t)
	_, js := natstest.JetStream(t, srv.ClientURL())
	const opTimeout = 500 * time.Millisecond
	st, err := kvstore.Open(ctx, js, kvstore.Config{Replicas: 1, OpTimeout: opTimeout})
	if err != nil {
		t.Fatal(err)
	}
	admin := natstest.NewUserKey(t)
	if _, err := st.AddUser(ctx, kvstore.User{Pub: admin, Admin: true}); err != nil {
		t.Fatal(err)
	}
	if ok, err := hasAdmin(ctx, st, admin); !ok || err != nil {
		t.Fatalf("before shutdown HasAdmin = %v, %v", ok, err)
	}
	srv.Close()

	// A generous bound over the operation timeout for scheduling under -race.
	const bound = opTimeout + time.Second
	for name, call := range map[string]func() (bool, error){
		"IsAuthorized": func() (bool, error) { return isAuthorized(ctx, st, admin) },
		"HasAdmin":     func() (bool, error) { return hasAdmin(ctx, st, admin) },
		"GetUserFromLeader": func() (bool, error) {
			_, err := st.GetUserFromLeader(ctx, admin)
			return err == nil, err
		},
		"ClaimNonce": func() (bool, error) {
			err := st.ClaimNonce(ctx, "fresh-nonce")
			return err == nil, err
		},
	} {
		start := time.Now()
		ok, err := call()
		elapsed := time.Since(start)
		if ok {
			t.Errorf("%s admitted with the server down", name)
		}
		if err == nil {
			t.Errorf("%s reported no error with the server down", name)
		}
		if elapsed > bound {
			t.Errorf("%s took %s, want within %s", name, elapsed, bound)
		}
	}
}
