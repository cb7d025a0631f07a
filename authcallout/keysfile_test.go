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
	for _, p := range [][2]nkeys.KeyPair{{a.Issuer, b.Issuer}, {a.XKey, b.XKey}, {a.CalloutUser, b.CalloutUser}, {a.ServiceUser, b.ServiceUser},
		{a.StoreUser, b.StoreUser}, {a.RouterUser, b.RouterUser}, {a.SystemUser, b.SystemUser}} {
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

// TestKeysFileWritesEveryUser: a written file holds every user's seed
// and public key, the router user's among them.
func TestKeysFileWritesEveryUser(t *testing.T) {
	k, err := authcallout.GenerateKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "unibus.creds")
	if err := authcallout.WriteKeysFile(path, k); err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]json.RawMessage
	if err := json.Unmarshal(content, &f); err != nil {
		t.Fatal(err)
	}
	for name, kp := range map[string]nkeys.KeyPair{"issuer": k.Issuer, "callout_user": k.CalloutUser, "service_user": k.ServiceUser,
		"store_user": k.StoreUser, "router_user": k.RouterUser, "system_user": k.SystemUser} {
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Seed string `json:"seed"`
			Pub  string `json:"pub"`
		}
		if err := json.Unmarshal(f[name], &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Pub != pubOf(t, kp) || got.Seed != string(seed) {
			t.Errorf("%s written as %s, want %s and its seed", name, got.Pub, pubOf(t, kp))
		}
	}
}

// TestReadKeysFileDerivesMissingUsers: a file written before the router
// user (or the store user) had a key of its own is read with that key
// derived from the service user's: the same on every read (every unibusd
// of the deployment agrees), distinct from every other key and per role,
// and admitted by NATSConfig.
func TestReadKeysFileDerivesMissingUsers(t *testing.T) {
	k, err := authcallout.GenerateKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	full := filepath.Join(dir, "full.creds")
	if err := authcallout.WriteKeysFile(full, k); err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	older := func(name string, drop ...string) string {
		var c map[string]any
		if err := json.Unmarshal(content, &c); err != nil {
			t.Fatal(err)
		}
		for _, field := range drop {
			delete(c, field)
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noRouter := older("no-router.creds", "router_user")
	neither := older("neither.creds", "router_user", "store_user")

	a, err := authcallout.ReadKeysFile(noRouter)
	if err != nil {
		t.Fatal(err)
	}
	again, err := authcallout.ReadKeysFile(noRouter)
	if err != nil {
		t.Fatal(err)
	}
	if pubOf(t, a.RouterUser) != pubOf(t, again.RouterUser) {
		t.Fatal("the derived router user differs between two reads of the same file")
	}
	if pubOf(t, a.StoreUser) != pubOf(t, k.StoreUser) {
		t.Fatal("the store user written in the file was not used")
	}
	if pubOf(t, a.RouterUser) == pubOf(t, k.RouterUser) {
		t.Fatal("the router user was not derived")
	}
	old, err := authcallout.ReadKeysFile(neither)
	if err != nil {
		t.Fatal(err)
	}
	if pubOf(t, old.RouterUser) != pubOf(t, a.RouterUser) {
		t.Fatal("the derived router user depends on more than the service user")
	}
	seen := map[string]string{}
	for name, kp := range map[string]nkeys.KeyPair{"issuer": old.Issuer, "callout": old.CalloutUser, "service": old.ServiceUser,
		"store": old.StoreUser, "router": old.RouterUser, "system": old.SystemUser, "written store": k.StoreUser} {
		if other, dup := seen[pubOf(t, kp)]; dup {
			t.Fatalf("the %s and %s keys are the same", name, other)
		}
		seen[pubOf(t, kp)] = name
	}
	conf, err := authcallout.NATSConfig(old, authcallout.PeerLimits{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(conf, pubOf(t, old.RouterUser)) {
		t.Fatal("the configuration of an old file lacks the derived router user")
	}
}

// TestKeysValidation: every user key is required, of the user kind, and
// distinct: one key in two roles would hold the rights of both.
func TestKeysValidation(t *testing.T) {
	for name, change := range map[string]func(*authcallout.Keys){
		"no router user":          func(k *authcallout.Keys) { k.RouterUser = nil },
		"no store user":           func(k *authcallout.Keys) { k.StoreUser = nil },
		"router user is account":  func(k *authcallout.Keys) { k.RouterUser = k.Issuer },
		"router user is services": func(k *authcallout.Keys) { k.RouterUser = k.ServiceUser },
		"store user is router":    func(k *authcallout.Keys) { k.StoreUser = k.RouterUser },
	} {
		t.Run(name, func(t *testing.T) {
			k, err := authcallout.GenerateKeys(false)
			if err != nil {
				t.Fatal(err)
			}
			change(&k)
			if _, err := authcallout.NATSConfig(k, authcallout.PeerLimits{}); !errors.Is(err, authcallout.ErrConfigValidation) {
				t.Fatalf("NATSConfig = %v, want ErrConfigValidation", err)
			}
			if err := authcallout.WriteKeysFile(filepath.Join(t.TempDir(), "k.creds"), k); !errors.Is(err, authcallout.ErrConfigValidation) {
				t.Fatalf("WriteKeysFile = %v, want ErrConfigValidation", err)
			}
		})
	}
}
