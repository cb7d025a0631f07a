package authcallout_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestNATSConfigStorageLimits: the account's JetStream storage limits are
// validated, written into account UNIBUS (the defaults when unset), and
// enforced by a server that loads the configuration.
func TestNATSConfigStorageLimits(t *testing.T) {
	keys, err := authcallout.GenerateKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []authcallout.PeerLimits{
		{MaxFileStore: authcallout.MinStoreBytes - 1},
		{MaxFileStore: -2},
		{MaxMemoryStore: 1},
	} {
		if _, err := authcallout.NATSConfig(keys, l); !errors.Is(err, authcallout.ErrConfigValidation) {
			t.Errorf("NATSConfig(%+v) = %v, want ErrConfigValidation", l, err)
		}
	}
	for _, tc := range []struct {
		limits authcallout.PeerLimits
		want   string
	}{
		{authcallout.PeerLimits{}, "jetstream: { max_file: 8589934592, max_mem: 1073741824 }"},
		{authcallout.PeerLimits{MaxFileStore: -1, MaxMemoryStore: 5 << 20}, "jetstream: { max_file: -1, max_mem: 5242880 }"},
	} {
		conf, err := authcallout.NATSConfig(keys, tc.limits)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(conf, authcallout.AccountUnibus+": { "+tc.want) {
			t.Errorf("NATSConfig(%+v) without %q:\n%s", tc.limits, tc.want, conf)
		}
	}

	n := nodetest.Run(t, func(c *node.Config) {
		c.Callout.Limits = authcallout.PeerLimits{MaxFileStore: 96 << 20, MaxMemoryStore: 48 << 20}
	})
	js, err := jetstream.New(n.StoreConn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Limits.MaxStore != 96<<20 || info.Limits.MaxMemory != 48<<20 {
		t.Errorf("account UNIBUS has JetStream limits %+v, want 96 MiB of file and 48 MiB of memory", info.Limits)
	}
	if got, want := n.Store.BlobsMaxBytes(), int64(96<<20)/4*3; got != want {
		t.Errorf("blob store of %d bytes, want three quarters of the account's file storage, %d", got, want)
	}
}
