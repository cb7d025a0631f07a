package authcallout_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/authcallout"
)

func pubOf(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	if kp == nil {
		return ""
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func sameKeys(t *testing.T, a, b authcallout.Keys) {
	t.Helper()
	for _, p := range [][2]nkeys.KeyPair{{a.Issuer, b.Issuer}, {a.XKey, b.XKey}, {a.CalloutUser, b.CalloutUser}, {a.ServiceUser, b.ServiceUser}, {a.SystemUser, b.SystemUser}} {
		if pubOf(t, p[0]) != pubOf(t, p[1]) {
			t.Fatalf("key differs: %s vs %s", pubOf(t, p[0]), pubOf(t, p[1]))
		}
	}
}

func TestKeysFileRoundTrip(t *testing.T) {
	for _, withXKey := range []bool{false, true} {
		k, err := authcallout.GenerateKeys(withXKey)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "sub", "unibus.creds")
		if err := authcallout.WriteKeysFile(path, k); err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Fatalf("mode %04o, want 0600", perm)
		}
		got, err := authcallout.ReadKeysFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sameKeys(t, k, got)
		if withXKey != (got.XKey != nil) {
			t.Fatalf("xkey present = %v, want %v", got.XKey != nil, withXKey)
		}
		// The same keys make the same nats-server configuration.
		c1, _ := authcallout.NATSConfig(k, authcallout.PeerLimits{})
		c2, _ := authcallout.NATSConfig(got, authcallout.PeerLimits{})
		if c1 != c2 {
			t.Fatal("configuration differs after a round trip")
		}
		// Never overwritten.
		other, _ := authcallout.GenerateKeys(false)
		if err := authcallout.WriteKeysFile(path, other); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("overwrite: %v, want fs.ErrExist", err)
		}
		again, err := authcallout.ReadKeysFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sameKeys(t, k, again)
	}
}

func TestLoadOrCreateKeysFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "unibus.creds")
	k1, created, err := authcallout.LoadOrCreateKeysFile(path, true)
	if err != nil || !created {
		t.Fatalf("first call: created=%v err=%v", created, err)
	}
	k2, created, err := authcallout.LoadOrCreateKeysFile(path, false)
	if err != nil || created {
		t.Fatalf("second call: created=%v err=%v", created, err)
	}
	sameKeys(t, k1, k2)
	if k2.XKey == nil {
		t.Fatal("an existing file's xkey was dropped")
	}
}

func TestReadKeysFileRefusesBadFiles(t *testing.T) {
	k, err := authcallout.GenerateKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.creds")
	if err := authcallout.WriteKeysFile(good, k); err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(content, &m); err != nil {
		t.Fatal(err)
	}
	userSeed, _ := k.ServiceUser.Seed()
	write := func(name string, mutate func(map[string]any), mode os.FileMode) string {
		var c map[string]any
		_ = json.Unmarshal(content, &c)
		if mutate != nil {
			mutate(c)
		}
		b, _ := json.Marshal(c)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		path string
		want string
	}{
		{"readable by others", write("open.creds", nil, 0o644), "chmod 600"},
		{"not JSON", func() string {
			p := filepath.Join(dir, "junk.creds")
			_ = os.WriteFile(p, []byte("not json"), 0o600)
			return p
		}(), "not valid JSON"},
		{"missing issuer", write("noissuer.creds", func(c map[string]any) { delete(c, "issuer") }, 0o600), "issuer"},
		{"user seed as issuer", write("kind.creds", func(c map[string]any) {
			c["issuer"] = map[string]any{"seed": string(userSeed)}
		}, 0o600), "not a"},
		{"seed and public key disagree", write("mismatch.creds", func(c map[string]any) {
			c["system_user"].(map[string]any)["pub"] = pubOf(t, k.ServiceUser)
		}, 0o600), "does not match"},
		{"missing file", filepath.Join(dir, "absent.creds"), "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := authcallout.ReadKeysFile(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
