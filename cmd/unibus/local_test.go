package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// Tests that need no server.

func TestKeygenWritesPrivateSeedAndRefusesOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nested", "me.nk")
	var out, errOut bytes.Buffer
	a := &app{Stdout: &out, Stderr: &errOut, IdentityFile: filepath.Join(dir, "unused.nk")}
	if err := (&keygenCommand{app: a, Out: path}).Run(context.Background(), nil); err != nil {
		t.Fatalf("keygen: %v", err)
	}
	if got := fileMode(t, path); got != 0o600 {
		t.Fatalf("seed file mode %04o, want 0600", got)
	}
	id, err := identity.Load(path)
	if err != nil {
		t.Fatalf("load written seed: %v", err)
	}
	if pub := strings.TrimSpace(out.String()); pub != id.PublicKey() {
		t.Fatalf("printed %q, want the seed's public key %s", pub, id.PublicKey())
	}
	if _, err := os.Stat(a.IdentityFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("--out ignored: the --identity file was written too (%v)", err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	// Again, through the command line: refused, file untouched.
	r := cli{}.run(t, "", "keygen", "--out", path)
	if r.code != exitcode.Conflict || !strings.Contains(r.stderr, "never overwrites") {
		t.Fatalf("second keygen: code %d, stderr %q; want %d and a refusal", r.code, r.stderr, exitcode.Conflict)
	}
	if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, before) {
		t.Fatalf("seed file changed by a refused keygen (%v)", err)
	}

	// Without --out, keygen writes the --identity file.
	def := filepath.Join(dir, "default.nk")
	r = cli{}.run(t, def, "keygen")
	if r.code != exitcode.OK {
		t.Fatalf("keygen to --identity: code %d, stderr %q", r.code, r.stderr)
	}
	if id, err := identity.Load(def); err != nil || id.PublicKey() != strings.TrimSpace(r.stdout) {
		t.Fatalf("--identity file %s: %v", def, err)
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	dir := t.TempDir()
	seed := saveIdentity(t, dir, "me", nodetestIdentity(t))
	pub := strings.TrimSpace(cli{}.run(t, seed, "whoami", "--offline").stdout)
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown flag", []string{"--nope"}, "unknown flag: --nope"},
		{"unknown flag of a subcommand", []string{"send", "--nope", "r", "m"}, "unknown flag: --nope"},
		{"bad flag value", []string{"--timeout", "soon", "whoami"}, `invalid argument "soon"`},
		{"non-positive timeout", []string{"--timeout", "0s", "whoami"}, "--timeout must be positive"},
		{"unknown command", []string{"sned"}, `unknown command "sned"`},
		{"unknown subcommand", []string{"rooms", "craete"}, `unknown command "craete" for "unibus rooms"`},
		{"missing arguments", []string{"send", "ops"}, "missing arguments: want ROOM MESSAGE..."},
		{"too many arguments", []string{"rooms", "invite", "ops", pub, "extra"}, `unexpected "extra"`},
		{"accept without a room", []string{"rooms", "accept"}, "missing arguments: want ROOM"},
		{"decline of two rooms", []string{"rooms", "decline", "a", "b"}, `unexpected "b"`},
		{"invitations with an argument", []string{"rooms", "invitations", "x"}, `unexpected "x"`},
		{"not a user key", []string{"users", "add", "bob"}, "invalid user key"},
		{"seed instead of key", []string{"users", "add", "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTAM"}, "looks like a seed"},
		{"bad message ID", []string{"react", "ops", "abc", "👍"}, "not a message ID"},
		{"bad reply-to", []string{"send", "--reply-to", "abc", "ops", "hi"}, "not a message ID"},
		{"negative count", []string{"listen", "--count", "-1", "ops"}, "--count must not be negative"},
		{"two start points of listen", []string{"listen", "ops", "--last", "3", "--since", "1h"}, "--last and --since are mutually exclusive"},
		{"two start points of history", []string{"history", "ops", "--from", "7", "--last", "3"}, "--last and --from are mutually exclusive"},
		{"zero last", []string{"history", "ops", "--last", "0"}, "--last must be positive, got 0"},
		{"zero from", []string{"listen", "ops", "--from", "0"}, "--from must be positive, got 0"},
		{"negative from", []string{"history", "ops", "--from", "-2"}, `invalid argument "-2"`},
		{"bad since", []string{"listen", "ops", "--since", "last tuesday"}, "want a duration back from now"},
		{"future since", []string{"history", "ops", "--since", "2999-01-01"}, "in the future"},
		{"empty since", []string{"history", "ops", "--since", ""}, "--since is empty"},
		{"negative limit", []string{"history", "ops", "--limit", "-1"}, "--limit must not be negative"},
		{"history without a room", []string{"history"}, "missing arguments: want ROOM"},
		{"history of two rooms", []string{"history", "a", "b"}, `unexpected "b"`},
		{"bad history policy", []string{"rooms", "create", "x", "--history", "forever"}, `--history "forever": want keep or none`},
		{"max age without history", []string{"rooms", "create", "x", "--history", "none", "--history-max-age", "1h"}, "--history-max-age needs --history keep"},
		{"pinned CA with plaintext URL", []string{"--ca", seed, "--server", "nats://127.0.0.1:4222", "whoami"}, "use tls://"},
		{"plaintext URL beyond loopback", []string{"--server", "nats://10.1.2.3:4222", "whoami"}, "--insecure"},
		{"scheme-less URL beyond loopback", []string{"--server", "bus.example:4222", "rooms", "list"}, "UNIBUS_INSECURE=1"},
		{"one URL of a list beyond loopback", []string{"--server", "nats://127.0.0.1:4222,nats://bus.example:4222", "whoami"}, "bus.example is not a loopback address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli{}.run(t, seed, tc.args...)
			if r.code != exitcode.Usage {
				t.Fatalf("code %d, want %d; stderr %q", r.code, exitcode.Usage, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("stderr %q does not say %q", r.stderr, tc.want)
			}
			if !strings.Contains(r.stderr, "--help") && !strings.Contains(r.stderr, "tls://") {
				t.Fatalf("stderr %q does not point to --help", r.stderr)
			}
			if r.stdout != "" {
				t.Fatalf("stdout %q on a usage error", r.stdout)
			}
		})
	}
}

func nodetestIdentity(t *testing.T) *identity.Identity {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestMissingIdentityFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nobody.nk")
	for _, args := range [][]string{{"whoami"}, {"whoami", "--offline"}, {"send", "ops", "hi"}} {
		r := cli{server: "nats://" + closedPort(t)}.run(t, missing, args...)
		if r.code == exitcode.OK || r.code == exitcode.Unavailable {
			t.Fatalf("%v: code %d, want a local error; stderr %q", args, r.code, r.stderr)
		}
		for _, want := range []string{missing, "no such file", "unibus keygen", "--identity"} {
			if !strings.Contains(r.stderr, want) {
				t.Fatalf("%v: stderr %q does not say %q", args, r.stderr, want)
			}
		}
	}
}

func TestUnreachableServerExitsUnavailable(t *testing.T) {
	seed := saveIdentity(t, t.TempDir(), "me", nodetestIdentity(t))
	url := "nats://" + closedPort(t)
	r := cli{server: url}.run(t, seed, "rooms", "list")
	if r.code != exitcode.Unavailable {
		t.Fatalf("code %d, want %d; stderr %q", r.code, exitcode.Unavailable, r.stderr)
	}
	for _, want := range []string{url, "is unibusd running?", "make run"} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("stderr %q does not say %q", r.stderr, want)
		}
	}
}

// Every command documents itself and the exit codes.
func TestHelpOnEveryCommand(t *testing.T) {
	var walk func(*cobra.Command)
	var paths [][]string
	walk = func(c *cobra.Command) {
		if c.Hidden {
			return
		}
		paths = append(paths, strings.Fields(c.CommandPath())[1:])
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := newRootCommand(&app{}, noEnv)
	root.InitDefaultCompletionCmd()
	walk(root)
	if len(paths) < 15 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, p := range paths {
		r := cli{}.run(t, "", append(p, "--help")...)
		if r.code != exitcode.OK || !strings.Contains(r.stdout, "Usage:") || !strings.Contains(r.stdout, "Exit codes:") {
			t.Errorf("%v --help: code %d, stdout %q", p, r.code, r.stdout)
		}
	}
	// A group without a subcommand prints its help too.
	if r := (cli{}).run(t, "", "users"); r.code != exitcode.OK || !strings.Contains(r.stdout, "revoke") {
		t.Errorf("users: code %d, stdout %q", r.code, r.stdout)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := cli{}.run(t, "", "completion", shell)
		if r.code != exitcode.OK || !strings.Contains(r.stdout, "unibus") || len(r.stdout) < 500 {
			t.Errorf("completion %s: code %d, %d bytes, stderr %q", shell, r.code, len(r.stdout), r.stderr)
		}
	}
}

func TestExitCodes(t *testing.T) {
	api := func(code int) error {
		return fmt.Errorf("do it: %w", &client.APIError{Subject: "unibus.v1.x", Code: code, Message: "m"})
	}
	missing := &identityError{path: "x", err: fmt.Errorf("load identity: %w", &fs.PathError{Op: "open", Path: "x", Err: fs.ErrNotExist})}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitcode.OK},
		{"plain", errors.New("boom"), exitcode.Error},
		{"usage", usagef("bad"), exitcode.Usage},
		{"plaintext URL with CA", fmt.Errorf("%w: %w", client.ErrConnect, certs.ErrPlaintextURL), exitcode.Usage},
		{"not admitted", &notAdmittedError{pub: "U", err: nats.ErrAuthorization}, exitcode.Refused},
		{"401", api(subjects.CodeUnauthenticated), exitcode.Refused},
		{"403", api(subjects.CodeForbidden), exitcode.Refused},
		{"permissions violation", fmt.Errorf("send: %w", nats.ErrPermissionViolation), exitcode.Refused},
		{"404", api(subjects.CodeNotFound), exitcode.NotFound},
		{"409", api(subjects.CodeConflict), exitcode.Conflict},
		{"keygen target exists", identity.ErrExists, exitcode.Conflict},
		{"503", api(subjects.CodeUnavailable), exitcode.Unavailable},
		{"no servers", fmt.Errorf("%w at u: %w", client.ErrConnect, nats.ErrNoServers), exitcode.Unavailable},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), exitcode.Unavailable},
		{"interrupted", fmt.Errorf("x: %w", context.Canceled), exitcode.Interrupted},
		// A missing file's errno is a net.Error too: still not "unavailable".
		{"missing identity", missing, exitcode.Error},
		{"400", api(subjects.CodeBadRequest), exitcode.Error},
	} {
		if got := exitcode.Of(tc.err); got != tc.want {
			t.Errorf("%s: exitcode.Of(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestCleanDefusesTerminalEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"hello":                "hello",
		"a\x1b[2Jb":            "a\uFFFD[2Jb",
		"line1\nline2\tx":      "line1\nline2\tx",
		"rtl \u202eevil":       "rtl \uFFFDevil",
		"bad \xff utf8":        "bad \uFFFD utf8",
		"👩\u200d💻 stays whole": "👩\u200d💻 stays whole",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestInsecureOption: --insecure and UNIBUS_INSECURE allow a plaintext URL
// beyond loopback; a malformed UNIBUS_INSECURE is a usage error.
func TestInsecureOption(t *testing.T) {
	seed := saveIdentity(t, t.TempDir(), "me", nodetestIdentity(t))
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want bool
	}{
		{"default", nil, nil, false},
		{"flag", []string{"--insecure"}, nil, true},
		{"environment", nil, map[string]string{envInsecure: "1"}, true},
		{"environment true", nil, map[string]string{envInsecure: "true"}, true},
		{"environment off", nil, map[string]string{envInsecure: "0"}, false},
		{"flag overrides environment", []string{"--insecure=false"}, map[string]string{envInsecure: "1"}, false},
		{"flag overrides malformed environment", []string{"--insecure"}, map[string]string{envInsecure: "maybe"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			a := &app{Stdout: &out, Stderr: &errOut}
			root := newRootCommand(a, env(tc.env))
			root.SetArgs(append(append([]string{"--identity", seed}, tc.args...), "whoami", "--offline"))
			if err := root.ExecuteContext(context.Background()); err != nil {
				t.Fatalf("whoami --offline: %v", err)
			}
			if a.Insecure != tc.want {
				t.Fatalf("Insecure = %v, want %v", a.Insecure, tc.want)
			}
		})
	}

	t.Run("malformed environment", func(t *testing.T) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"--identity", seed, "whoami", "--offline"}, nil, &out, &errOut, env(map[string]string{envInsecure: "maybe"}))
		if code := report(&errOut, err); code != exitcode.Usage {
			t.Fatalf("code %d, want %d; stderr %q", code, exitcode.Usage, errOut.String())
		}
		if !strings.Contains(errOut.String(), `UNIBUS_INSECURE="maybe"`) {
			t.Fatalf("stderr %q does not name the variable", errOut.String())
		}
	})

	// With the opt-in, a plaintext URL beyond loopback is dialed: a local
	// address that is not loopback, where nothing listens.
	t.Run("dials beyond loopback", func(t *testing.T) {
		url := "nats://" + natstest.ClosedNonLoopbackAddr(t)
		for _, c := range []struct {
			args []string
			env  map[string]string
		}{
			{args: []string{"--insecure"}},
			{env: map[string]string{envInsecure: "1"}},
		} {
			var out, errOut bytes.Buffer
			args := append(append([]string{"--identity", seed, "--server", url}, c.args...), "whoami")
			err := run(context.Background(), args, nil, &out, &errOut, env(c.env))
			if code := report(&errOut, err); code != exitcode.Unavailable {
				t.Fatalf("%q %v: code %d, want %d; stderr %q", args, c.env, code, exitcode.Unavailable, errOut.String())
			}
			if errors.Is(err, client.ErrInsecureURL) {
				t.Fatalf("refused with the opt-in: %v", err)
			}
		}
	})
}
