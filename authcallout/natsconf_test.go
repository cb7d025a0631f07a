package authcallout_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenConfigPath is the NATS configuration of fixedKeys.
const goldenConfigPath = "testdata/natsconf.golden"

// fixedKeys are deployment keys made from fixed seeds, so that their
// configuration is always the same text.
func fixedKeys(t *testing.T) authcallout.Keys {
	t.Helper()
	key := func(prefix nkeys.PrefixByte, b byte) nkeys.KeyPair {
		raw := bytes.Repeat([]byte{b}, 32)
		if prefix == nkeys.PrefixByteCurve {
			seed, err := nkeys.EncodeSeed(prefix, raw)
			if err != nil {
				t.Fatal(err)
			}
			kp, err := nkeys.FromCurveSeed(seed)
			if err != nil {
				t.Fatal(err)
			}
			return kp
		}
		kp, err := nkeys.FromRawSeed(prefix, raw)
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	return authcallout.Keys{
		Issuer:      key(nkeys.PrefixByteAccount, 1),
		XKey:        key(nkeys.PrefixByteCurve, 2),
		CalloutUser: key(nkeys.PrefixByteUser, 3),
		ServiceUser: key(nkeys.PrefixByteUser, 4),
		StoreUser:   key(nkeys.PrefixByteUser, 5),
		RouterUser:  key(nkeys.PrefixByteUser, 6),
		SystemUser:  key(nkeys.PrefixByteUser, 7),
	}
}

// TestNATSConfigGolden: the whole configuration of fixed keys, as
// reviewed in testdata (go test -run NATSConfigGolden -update rewrites
// it), and the lines of the deployment's users as the design sets them:
// the router receives sends and publishes deliveries and inbox replies
// only; the store alone writes the room log and the events; every user
// bypasses the callout.
func TestNATSConfigGolden(t *testing.T) {
	k := fixedKeys(t)
	conf, err := authcallout.NATSConfig(k, authcallout.PeerLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(goldenConfigPath, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(goldenConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if conf != string(golden) {
		t.Errorf("configuration differs from %s (rerun with -update after review):\n%s", goldenConfigPath, conf)
	}
	quote := func(subs ...string) string {
		q := make([]string, len(subs))
		for i, s := range subs {
			q[i] = strconv.Quote(s)
		}
		return "[ " + strings.Join(q, ", ") + " ]"
	}
	user := func(kp nkeys.KeyPair, pub, sub []string) string {
		return "{ nkey: " + strconv.Quote(pubOf(t, kp)) + ", permissions: { publish: { allow: " + quote(pub...) +
			" }, subscribe: { allow: " + quote(sub...) + " } } }"
	}
	for name, want := range map[string]string{
		"router": user(k.RouterUser,
			[]string{subjects.InboxesAll, subjects.DeliverAll},
			[]string{subjects.SendAll, subjects.ServiceAPIAll, subjects.InboxesAll}),
		"store": user(k.StoreUser,
			[]string{subjects.JetStreamAll, subjects.KVAll, subjects.ObjectStoreAll, subjects.RoomLogAll, subjects.EventsAll},
			[]string{subjects.InboxesAll}),
		"services": user(k.ServiceUser,
			[]string{subjects.InboxesAll},
			[]string{subjects.UsersAll, subjects.RoomsAll, subjects.BlobsAll, subjects.ServiceAPIAll}),
		"auth users": "auth_users: " + quote(pubOf(t, k.CalloutUser), pubOf(t, k.ServiceUser), pubOf(t, k.StoreUser), pubOf(t, k.RouterUser), pubOf(t, k.SystemUser)),
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("configuration without the %s line %s", name, want)
		}
	}
}

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
	if got, want := n.Store.BlobsMaxBytes(), int64(96<<20)/2; got != want {
		t.Errorf("blob store of %d bytes, want half the account's file storage, %d", got, want)
	}
}
