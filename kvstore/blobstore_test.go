package kvstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/tests/natstest"
)

// limitedAccount starts a server whose account STORE has the JetStream
// storage limits given in the NATS configuration syntax (e.g.
// "max_mem: 16777216"), and returns a JetStream context of a
// user of it.
func limitedAccount(t *testing.T, limits string) jetstream.JetStream {
	t.Helper()
	conf := fmt.Sprintf("accounts { STORE: { jetstream: { %s }, users: [ { user: store, password: store } ] } }", limits)
	srv := natstest.RunServer(t, func(c *embedded.Config) {
		c.Customize = func(o *server.Options) error { return o.ProcessConfigString(conf) }
	})
	_, js := natstest.JetStream(t, srv.ClientURL(), nats.UserInfo("store", "store"))
	return js
}

// TestBlobStoreSize: the object store of blobs takes half of the
// account's JetStream storage limit (its replicas counted), the room log
// a quarter and the events a sixteenth, or sizes of the configuration's
// own, or the defaults when the account has no limit; sizes that would
// leave the KV buckets less than a quarter are refused.
func TestBlobStoreSize(t *testing.T) {
	const limit = 64 << 20
	for _, tc := range []struct {
		name    string
		account string // "" for a server without accounts: no limit
		cfg     kvstore.Config
		// want are the sizes of the blobs' object store, the room log and
		// the events stream (-1: none of its own).
		want    [3]int64
		refused string
	}{
		{name: "shares of the memory limit", account: "max_mem: 67108864, max_file: 1073741824", cfg: kvstore.Config{Memory: true}, want: [3]int64{limit / 2, limit / 4, limit / 16}},
		{name: "shares of the file limit", account: "max_mem: 1073741824, max_file: 67108864", cfg: kvstore.Config{}, want: [3]int64{limit / 2, limit / 4, limit / 16}},
		{name: "smaller blobs of its own", account: "max_mem: 67108864", cfg: kvstore.Config{Memory: true, BlobStoreMaxBytes: 8 << 20}, want: [3]int64{8 << 20, limit / 4, limit / 16}},
		{name: "larger blobs of its own leave the log less", account: "max_mem: 67108864", cfg: kvstore.Config{Memory: true, BlobStoreMaxBytes: 40 << 20}, want: [3]int64{40 << 20, 8 << 20, limit / 16}},
		{name: "larger log of its own leaves blobs less", account: "max_mem: 67108864", cfg: kvstore.Config{Memory: true, HistoryMaxBytes: 40 << 20}, want: [3]int64{8 << 20, 40 << 20, limit / 16}},
		{name: "both of its own", account: "max_mem: 67108864", cfg: kvstore.Config{Memory: true, BlobStoreMaxBytes: 16 << 20, HistoryMaxBytes: 32 << 20}, want: [3]int64{16 << 20, 32 << 20, limit / 16}},
		{name: "blobs at most three quarters", account: "max_mem: 67108864", cfg: kvstore.Config{Memory: true, BlobStoreMaxBytes: limit/4*3 + 1}, refused: "less than a quarter"},
		{name: "blobs and log at most three quarters", account: "max_mem: 67108864", cfg: kvstore.Config{Memory: true, BlobStoreMaxBytes: 32 << 20, HistoryMaxBytes: 16<<20 + 1}, refused: "less than a quarter"},
		{name: "blobs leave the log too little", account: "max_mem: 67108864", cfg: kvstore.Config{Memory: true, BlobStoreMaxBytes: limit/4*3 - 1<<19}, refused: "leaves the room log"},
		{name: "unbounded log with an account limit", account: "max_mem: 67108864", cfg: kvstore.Config{Memory: true, HistoryMaxBytes: -1}, refused: "needs an account without"},
		{name: "account too small", account: "max_mem: 1048576", cfg: kvstore.Config{Memory: true}, refused: "raise the account's limit"},
		{name: "no account limit", cfg: kvstore.Config{Memory: true}, want: [3]int64{kvstore.DefaultBlobStoreMaxBytes, kvstore.DefaultHistoryMaxBytes, -1}},
		{name: "no account limit, sizes of its own", cfg: kvstore.Config{Memory: true, BlobStoreMaxBytes: 3 << 20, HistoryMaxBytes: -1}, want: [3]int64{3 << 20, -1, -1}},
		{name: "blobs below the minimum", cfg: kvstore.Config{Memory: true, BlobStoreMaxBytes: kvstore.MinBlobStoreBytes - 1}, refused: "at least"},
		{name: "log below the minimum", cfg: kvstore.Config{Memory: true, HistoryMaxBytes: kvstore.MinHistoryBytes - 1}, refused: "at least"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var js jetstream.JetStream
			if tc.account != "" {
				js = limitedAccount(t, tc.account)
			} else {
				_, js = natstest.JetStream(t, natstest.RunServer(t).ClientURL())
			}
			tc.cfg.Replicas = 1
			st, err := kvstore.Open(context.Background(), js, tc.cfg)
			if tc.refused != "" {
				if !errors.Is(err, kvstore.ErrConfigValidation) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("Open = %v, want ErrConfigValidation saying %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := st.BlobsMaxBytes(); got != tc.want[0] {
				t.Errorf("BlobsMaxBytes = %d, want %d", got, tc.want[0])
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i, name := range []string{"OBJ_" + kvstore.BucketBlobs, kvstore.StreamRoomLog, kvstore.StreamEvents} {
				stream, err := js.Stream(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				if got := stream.CachedInfo().Config.MaxBytes; got != tc.want[i] {
					t.Errorf("%s MaxBytes = %d, want %d", name, got, tc.want[i])
				}
			}
		})
	}
}

// TestBlobsCannotStarveState: blobs that fill their object store are
// refused by JetStream, and the KV buckets, nonce claims first, still take
// writes: the account's storage is never all blobs.
func TestBlobsCannotStarveState(t *testing.T) {
	js := limitedAccount(t, "max_mem: 16777216, max_file: 16777216")
	st, err := kvstore.Open(context.Background(), js, kvstore.Config{Replicas: 1, Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Fill every byte an uploader can: large objects until one is
	// refused, then smaller ones in what is left.
	stored, objects := 0, 0
	var refused error
	for _, size := range []int{512 << 10, 16 << 10, 256} {
		data := bytes.Repeat([]byte{'b'}, size)
		for refused = nil; refused == nil; objects++ {
			if objects > 1024 {
				t.Fatalf("%d bytes stored in %d objects, and no refusal", stored, objects)
			}
			if _, refused = st.Blobs().Put(ctx, jetstream.ObjectMeta{Name: fmt.Sprintf("room/blob/%d", objects)}, bytes.NewReader(data)); refused == nil {
				stored += size
			}
		}
	}
	for i := range 100 {
		if err := st.ClaimNonce(ctx, fmt.Sprintf("nonce-%d", i)); err != nil {
			t.Fatalf("claim nonce %d after %d bytes of blobs: %v", i, stored, err)
		}
	}
	if _, err := st.AddUser(ctx, kvstore.User{Pub: natstest.NewUserKey(t), Name: "after"}); err != nil {
		t.Fatalf("add user after %d bytes of blobs: %v", stored, err)
	}
	var apiErr *jetstream.APIError
	if !errors.As(refused, &apiErr) || !strings.Contains(apiErr.Description, "maximum bytes") {
		t.Errorf("blobs refused with %v, want the object store's maximum bytes exceeded", refused)
	}
	if limit := st.BlobsMaxBytes(); int64(stored) > limit || int64(stored) < limit/2 {
		t.Errorf("%d bytes of blobs stored, want most of the store's %d", stored, limit)
	}
}
