package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/svc"
)

// writeConfig writes a unibusd configuration file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "unibusd.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigFileSettings(t *testing.T) {
	path := writeConfig(t, `
# a unibusd configuration file
port: 4333
host = "0.0.0.0"
op_timeout: 3s
max-skew: "90s"
replicas: 3
require_encrypted_rooms: true
auth_mode: soft
routes: [ "nats-route://10.0.0.2:6222", nats-route://10.0.0.3:6222 ]
cluster_name: prod
name: n1
admin: UFROMFILE
rate_limit: 7.5
max_members_per_room: 20
max_publish_bytes: 2MB
`)
	var o serveOptions
	var errOut bytes.Buffer
	// The flag beats the file; the environment beats the file.
	_, err := o.parse("unibusd", []string{"--config", path, "--port", "5000"}, &errOut,
		envOf(map[string]string{"UNIBUS_ADMIN": "UFROMENV", "UNIBUS_DATA": "/env/data"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"port (flag over file)", strconv.Itoa(o.port), "5000"},
		{"host", o.host, "0.0.0.0"},
		{"op_timeout", o.opTimeout.String(), (3 * time.Second).String()},
		{"max-skew", o.maxSkew.String(), (90 * time.Second).String()},
		{"replicas", strconv.Itoa(o.replicas), "3"},
		{"require_encrypted_rooms", strconv.FormatBool(o.requireEncrypted), "true"},
		{"auth_mode", o.authMode, "soft"},
		{"routes", o.routes, "nats-route://10.0.0.2:6222,nats-route://10.0.0.3:6222"},
		{"cluster_name", o.clusterName, "prod"},
		{"admin (env over file)", o.admin, "UFROMENV"},
		{"rate_limit", strconv.FormatFloat(o.limits.rateLimit, 'f', -1, 64), "7.5"},
		{"max_members_per_room", strconv.Itoa(o.limits.maxMembersPerRoom), "20"},
		{"max_publish_bytes (NATS size suffix)", strconv.FormatInt(o.limits.maxPublishBytes, 10), "2097152"},
		{"data (env, not in file)", o.data, "/env/data"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestConfigFileFromEnvironment(t *testing.T) {
	path := writeConfig(t, "port: 4999\n")
	var o serveOptions
	if _, err := o.parse("unibusd", nil, &bytes.Buffer{}, envOf(map[string]string{"UNIBUS_CONFIG": path})); err != nil {
		t.Fatal(err)
	}
	if o.port != 4999 {
		t.Fatalf("UNIBUS_CONFIG not read: port %d", o.port)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"unknown setting", "prot: 4222\n", `unknown setting "prot"`},
		{"config inside config", "config: other.conf\n", `unknown setting "config"`},
		{"bad duration", "op_timeout: soon\n", `op_timeout: invalid value "soon"`},
		{"bad number", "port: many\n", "port"},
		{"bad boolean", "xkey: perhaps\n", "xkey"},
		{"nested block", "host { name: x }\n", "unsupported value"},
		{"list of lists", "routes: [[a]]\n", "may not hold lists"},
		{"syntax error", "port: {\n", "unibusd.conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o serveOptions
			_, err := o.parse("unibusd", []string{"--config", writeConfig(t, tc.text)}, &bytes.Buffer{}, envOf(nil))
			if err == nil || !errors.Is(err, exitcode.ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a usage error mentioning %q", err, tc.want)
			}
			if exitCode(err) != 2 {
				t.Fatalf("exit code %d, want 2", exitCode(err))
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		var o serveOptions
		_, err := o.parse("unibusd", []string{"--config", filepath.Join(t.TempDir(), "absent.conf")}, &bytes.Buffer{}, envOf(nil))
		if err == nil || !strings.Contains(err.Error(), "absent.conf") {
			t.Fatalf("err = %v, want it to name the file", err)
		}
	})
}

// TestServeSettingCombinations checks the settings that only make sense
// together, before anything starts.
func TestServeSettingCombinations(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "unibus.creds")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cluster without name", []string{"--cluster-name", "c", "--creds", creds}, "needs --name"},
		{"cluster without creds", []string{"--cluster-name", "c", "--name", "n1"}, "needs --creds"},
		{"routes without cluster", []string{"--routes", "nats-route://a:1"}, "needs --cluster-name"},
		{"attach without creds", []string{"--nats", "nats://127.0.0.1:1"}, "needs --creds"},
		{"attach with embedded TLS", []string{"--nats", "nats://127.0.0.1:1", "--tls-cert", "a", "--tls-key", "b"}, "--tls-cert"},
		{"attach with routes", []string{"--nats", "nats://127.0.0.1:1", "--cluster-name", "c"}, "--cluster-name"},
		{"nats-ca without nats", []string{"--nats-ca", "ca.pem"}, "goes with --nats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o serveOptions
			if _, err := o.parse("unibusd", tc.args, &bytes.Buffer{}, envOf(nil)); err != nil {
				t.Fatal(err)
			}
			_, err := o.nodeConfig(nil)
			if err == nil || !errors.Is(err, exitcode.ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a usage error mentioning %q", err, tc.want)
			}
		})
	}
	if _, err := os.Stat(creds); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused configuration wrote credentials: %v", err)
	}
	t.Run("attach with unreadable creds", func(t *testing.T) {
		var o serveOptions
		if _, err := o.parse("unibusd", []string{"--nats", "nats://127.0.0.1:1", "--creds", creds}, &bytes.Buffer{}, envOf(nil)); err != nil {
			t.Fatal(err)
		}
		if _, err := o.nodeConfig(nil); err == nil || !strings.Contains(err.Error(), "unibus.creds") {
			t.Fatalf("err = %v, want it to name the credentials file", err)
		}
		if _, err := os.Stat(creds); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("attaching created credentials: they must come from the operator")
		}
	})
}

func TestNATSConfigCommand(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "unibus.creds")
	var out1, errOut bytes.Buffer
	cmd := &natsConfigCommand{Stdout: &out1, Stderr: &errOut, Getenv: envOf(nil)}
	if err := cmd.Run(context.Background(), []string{"--creds", creds, "--xkey"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "wrote new deployment credentials") {
		t.Fatalf("creation not reported: %q", errOut.String())
	}
	keys, err := authcallout.ReadKeysFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	issuer, _ := keys.Issuer.PublicKey()
	xkey, _ := keys.XKey.PublicKey()
	service, _ := keys.ServiceUser.PublicKey()
	for _, want := range []string{issuer, xkey, service, "auth_callout", "jetstream: { max_file: 8589934592, max_mem: 1073741824 }", "include"} {
		if !strings.Contains(out1.String(), want) {
			t.Errorf("configuration lacks %q", want)
		}
	}
	seed, _ := keys.Issuer.Seed()
	if strings.Contains(out1.String(), string(seed)) {
		t.Fatal("the configuration leaks a seed")
	}
	// Again, to a file and from the environment: the same configuration.
	out := filepath.Join(dir, "unibus.conf")
	errOut.Reset()
	cmd = &natsConfigCommand{Stdout: &bytes.Buffer{}, Stderr: &errOut, Getenv: envOf(map[string]string{"UNIBUS_CREDS": creds})}
	if err := cmd.Run(context.Background(), []string{"--out", out}); err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(written) != out1.String() {
		t.Fatal("a second run printed a different configuration")
	}
	if errOut.Len() != 0 {
		t.Fatalf("existing credentials reported as new: %q", errOut.String())
	}
	// Limits go into the account and must be coherent.
	limited := &bytes.Buffer{}
	if err := (&natsConfigCommand{Stdout: limited, Stderr: &bytes.Buffer{}, Getenv: envOf(nil)}).Run(context.Background(), []string{"--creds", creds, "--max-publish-bytes", "2000000", "--max-subscriptions", "99"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(limited.String(), "max_payload: 2000000, max_subscriptions: 99") {
		t.Fatalf("limits not in the account: %s", limited.String())
	}
	for _, args := range [][]string{{}, {"--creds", creds, "extra"}, {"--nope"}, {"--creds", filepath.Join(dir, "new.creds"), "--max-publish-bytes", "10"}} {
		err := (&natsConfigCommand{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: envOf(nil)}).Run(context.Background(), args)
		if !errors.Is(err, exitcode.ErrUsage) {
			t.Errorf("args %q: err = %v, want a usage error", args, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new.creds")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("refused limits still created credentials")
	}
}

// TestNonceTTLFollowsTheSkew: a larger --max-skew keeps nonces long
// enough for it (and the clocks of the instances to differ), so that the
// services accept the configuration and a replay cannot outlive its nonce.
func TestNonceTTLFollowsTheSkew(t *testing.T) {
	for _, skew := range []string{"2m", "5m"} {
		cfg, err := nodeConfigOf(t, []string{"--max-skew", skew})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := time.ParseDuration(skew)
		if got, want := cfg.Store.NonceTTL, svc.MinNonceTTL(d); got != want || got <= 2*d {
			t.Errorf("--max-skew %s: nonce TTL %s, want %s (more than twice the skew)", skew, got, want)
		}
	}
}
