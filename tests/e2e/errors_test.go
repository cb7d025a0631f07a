package e2e_test

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// unreachable is a server URL where nothing listens.
const unreachable = "nats://127.0.0.1:1"

// TestExitCodes runs the three binaries on bad input and checks the exit
// code documented for each case (`unibus --help`, cmd/worker's and
// cmd/unibusd's package documentation) and that the message says what is
// wrong and, for the CLI, what to do. None of these needs a server.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	env := testEnv(t)
	seed := filepath.Join(dir, "me.nk")
	pub := keygen(t, env, seed)
	missing := filepath.Join(dir, "nobody.nk")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Close() }()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		name string
		bin  string
		env  []string // added to env
		args []string
		code int
		want []string // in standard error
	}{
		{
			name: "unibus unknown flag",
			bin:  unibusBin, args: []string{"--bogus"},
			code: exitUsage, want: []string{"unknown flag: --bogus", "run `unibus --help` for usage"},
		},
		{
			name: "unibus subcommand unknown flag",
			bin:  unibusBin, args: []string{"rooms", "create", "--nope", "ops"},
			code: exitUsage, want: []string{"unknown flag: --nope", "run `unibus rooms create --help` for usage"},
		},
		{
			name: "unibus unknown command",
			bin:  unibusBin, args: []string{"rooms", "explode"},
			code: exitUsage, want: []string{`unknown command "explode"`, "unibus rooms --help"},
		},
		{
			name: "unibus missing arguments",
			bin:  unibusBin, args: []string{"--identity", seed, "--server", unreachable, "send"},
			code: exitUsage, want: []string{"missing arguments: want ROOM MESSAGE...", "unibus send --help"},
		},
		{
			name: "unibus bad flag value",
			bin:  unibusBin, args: []string{"--identity", seed, "--server", unreachable, "listen", "ops", "--count", "-1"},
			code: exitUsage, want: []string{"--count must not be negative"},
		},
		{
			name: "unibus bad timeout",
			bin:  unibusBin, args: []string{"--timeout", "0s", "whoami"},
			code: exitUsage, want: []string{"--timeout must be positive"},
		},
		{
			name: "unibus missing seed file",
			bin:  unibusBin, args: []string{"--identity", missing, "--server", unreachable, "whoami"},
			code: exitError, want: []string{missing, "no such file", "create one with `unibus keygen`"},
		},
		{
			name: "unibus missing seed file from the environment",
			bin:  unibusBin, env: []string{"UNIBUS_IDENTITY=" + missing, "UNIBUS_SERVER=" + unreachable},
			args: []string{"rooms", "list"},
			code: exitError, want: []string{"no identity at " + missing, "UNIBUS_IDENTITY"},
		},
		{
			name: "unibus keygen never overwrites",
			bin:  unibusBin, args: []string{"keygen", "--out", seed},
			code: exitConflict, want: []string{seed + " exists", "never overwrites"},
		},
		{
			name: "unibus unreachable server",
			bin:  unibusBin, args: []string{"--identity", seed, "--server", unreachable, "whoami"},
			code: exitUnavailable, want: []string{"connect to unibus at " + unreachable, "is unibusd running?"},
		},
		{
			name: "unibus unreachable server from the environment",
			bin:  unibusBin, env: []string{"UNIBUS_IDENTITY=" + seed, "UNIBUS_SERVER=" + unreachable},
			args: []string{"send", "ops", "hello"},
			code: exitUnavailable, want: []string{"connect to unibus at " + unreachable, "is unibusd running?"},
		},
		{
			name: "unibusd unknown flag",
			bin:  unibusdBin, args: []string{"--bogus"},
			code: exitUsage, want: []string{"flag provided but not defined: -bogus", "Usage of unibusd", "-port"},
		},
		{
			name: "unibusd unexpected argument",
			bin:  unibusdBin, args: []string{"--port", "-1", "--data", filepath.Join(dir, "data"), "extra"},
			code: exitUsage, want: []string{`unexpected argument "extra"`},
		},
		{
			name: "unibusd TLS key without certificate",
			bin:  unibusdBin, args: []string{"--port", "-1", "--data", filepath.Join(dir, "data"), "--tls-key", filepath.Join(dir, "key.pem")},
			code: exitUsage, want: []string{"--tls-cert and --tls-key go together"},
		},
		{
			name: "unibusd port in use",
			bin:  unibusdBin, args: []string{"--port", busyPort, "--data", filepath.Join(dir, "busy")},
			code: exitError, want: []string{"127.0.0.1:" + busyPort, "address already in use"},
		},
		{
			name: "worker unknown flag",
			bin:  workerBin, args: []string{"--bogus"},
			code: exitUsage, want: []string{"flag provided but not defined: -bogus", "Usage of worker"},
		},
		{
			name: "worker without identity",
			bin:  workerBin, args: []string{"--server", unreachable},
			code: exitUsage, want: []string{"no identity", "UNIBUS_IDENTITY"},
		},
		{
			name: "worker missing seed file",
			bin:  workerBin, args: []string{"--identity", missing, "--server", unreachable},
			code: exitError, want: []string{"worker: load identity: open " + missing + ": no such file"},
		},
		{
			name: "worker unreachable server",
			bin:  workerBin, args: []string{"--identity", seed, "--server", unreachable},
			code: exitUnavailable, want: []string{"connect to unibus at " + unreachable},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBin(t, append(env[:len(env):len(env)], tt.env...), tt.bin, tt.args...)
			if r.code != tt.code {
				t.Errorf("%s %q: exit code %d, want %d\n%s", filepath.Base(tt.bin), tt.args, r.code, tt.code, r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("%s %q: standard error lacks %q\n%s", filepath.Base(tt.bin), tt.args, w, r)
				}
			}
			if tt.bin == unibusBin && tt.code != exitOK && r.stdout != "" {
				t.Errorf("%s %q failed but printed on standard output\n%s", filepath.Base(tt.bin), tt.args, r)
			}
		})
	}

	// The seed file that failed nowhere is still the one keygen wrote.
	if r := runBin(t, env, unibusBin, "--identity", seed, "whoami", "--offline"); r.code != exitOK || strings.TrimSpace(r.stdout) != pub {
		t.Fatalf("whoami --offline: want %s: %s", pub, r)
	}
}
