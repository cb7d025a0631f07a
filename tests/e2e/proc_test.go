package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the waits on subprocesses.
const (
	// waitTimeout bounds waiting for a subprocess to print what a test
	// expects, or to finish.
	waitTimeout = 20 * time.Second
	// stopTimeout bounds waiting for a signalled subprocess to exit.
	stopTimeout = 10 * time.Second
)

// Exit codes of the unibus CLI (cmd/unibus/main.go, `unibus --help`); the
// worker uses the same numbers, unibusd 0, 1 and 2.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitRefused     = 3
	exitNotFound    = 4
	exitConflict    = 5
	exitUnavailable = 69
)

// output collects what a subprocess writes to one stream and wakes up
// waiters on every write.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

// String returns everything written so far.
func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// lines returns the complete lines written so far.
func (o *output) lines() []string {
	s := o.String()
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return nil
	}
	return strings.Split(s[:i], "\n")
}

// wait returns a channel closed at the next write.
func (o *output) wait() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changed
}

// proc is a running subprocess.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr *output
	done           chan struct{} // closed when the process has exited
	waitErr        error         // set before done is closed
}

// testEnv is the environment of every subprocess: the test's own without
// the UNIBUS_ variables (a developer's settings must not leak in), with
// HOME and the XDG directories in a temporary directory, plus extra.
func testEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	home := t.TempDir()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "UNIBUS_"), k == "HOME", strings.HasPrefix(k, "XDG_"):
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"XDG_DATA_HOME="+filepath.Join(home, "data"))
	return append(env, extra...)
}

// start starts bin with args; t.Cleanup kills it if it is still running
// and waits for it.
func start(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, stdout: newOutput(), stderr: newOutput(), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		select {
		case <-p.done:
		case <-time.After(stopTimeout):
			t.Errorf("%s (pid %d) still running %s after SIGKILL", name, p.cmd.Process.Pid, stopTimeout)
		}
	})
	return p
}

// kill sends SIGKILL unless the process has exited.
func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
	}
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode is the exit code of an exited process (-1 when a signal ended
// it).
func (p *proc) exitCode() int { return p.cmd.ProcessState.ExitCode() }

// stop sends sig and returns the exit code once the process has exited.
func (p *proc) stop(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		t.Fatalf("signal %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		t.Fatalf("%s did not exit within %s of %v\n%s", p.name, stopTimeout, sig, p.describe())
	}
	return p.exitCode()
}

// crash SIGKILLs the process and waits until it is gone.
func (p *proc) crash(t *testing.T) {
	t.Helper()
	p.kill()
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		t.Fatalf("%s still running %s after SIGKILL", p.name, stopTimeout)
	}
	var ee *exec.ExitError
	if !errors.As(p.waitErr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("%s was not ended by SIGKILL: %v", p.name, p.waitErr)
	}
}

// describe shows the end of the process's output, for failure messages.
func (p *proc) describe() string {
	state := "running"
	if p.exited() {
		state = "exited: " + p.cmd.ProcessState.String()
	}
	return "--- " + p.name + " (" + state + ") stdout:\n" + tail(p.stdout.String()) +
		"\n--- " + p.name + " stderr:\n" + tail(p.stderr.String())
}

// tail returns the last few kilobytes of s.
func tail(s string) string {
	const n = 4096
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// waitFor waits until cond holds, re-checking it whenever stream gets
// output; it fails the test, showing what the process printed, on timeout
// or when the process exits first. The output of others (the daemon, say)
// is shown too.
func (p *proc) waitFor(t *testing.T, stream *output, what string, cond func() bool, others ...*proc) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		changed := stream.wait()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-p.done:
			if cond() {
				return
			}
			t.Fatalf("%s exited before %s\n%s%s", p.name, what, p.describe(), describeAll(others))
		case <-deadline:
			t.Fatalf("no %s within %s\n%s%s", what, waitTimeout, p.describe(), describeAll(others))
		}
	}
}

func describeAll(ps []*proc) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString("\n")
		b.WriteString(p.describe())
	}
	return b.String()
}

// daemon is a running unibusd.
type daemon struct {
	*proc
	url string
}

// readyLine is what unibusd prints on standard output once clients can
// connect.
var readyLine = regexp.MustCompile(`^unibus is ready: clients connect to (\S+) \(data in (.+)\)$`)

// startDaemon starts unibusd on a free port with its data in dataDir and
// admin (a public key) as the bootstrap admin, and waits for its ready line.
func startDaemon(t *testing.T, name, dataDir, admin string) *daemon {
	t.Helper()
	p := start(t, name, unibusdBin, testEnv(t), "--port", "-1", "--data", dataDir, "--admin", admin)
	d := &daemon{proc: p}
	p.waitFor(t, p.stdout, "ready line from unibusd", func() bool {
		for _, l := range p.stdout.lines() {
			if m := readyLine.FindStringSubmatch(l); m != nil {
				if m[2] != dataDir {
					t.Fatalf("unibusd reports data in %q, want %q", m[2], dataDir)
				}
				d.url = m[1]
				return true
			}
		}
		return false
	})
	return d
}

// result is the outcome of a command run to its end.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return "exit code " + strconv.Itoa(r.code) + "\n--- stdout:\n" + tail(r.stdout) + "\n--- stderr:\n" + tail(r.stderr)
}

// runBin runs bin with args to its end (bounded by waitTimeout).
func runBin(t *testing.T, env []string, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s %q: %v", filepath.Base(bin), args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %q did not finish within %s\nstdout:\n%s\nstderr:\n%s", filepath.Base(bin), args, waitTimeout, stdout.String(), stderr.String())
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// cli runs the unibus CLI against one server.
type cli struct {
	url string
	env []string
}

// args returns the global flags for identity seed, then args.
func (c cli) args(seed string, args ...string) []string {
	return append([]string{"--identity", seed, "--server", c.url, "--timeout", "10s"}, args...)
}

// run runs `unibus` as seed and returns its result.
func (c cli) run(t *testing.T, seed string, args ...string) result {
	t.Helper()
	return runBin(t, c.env, unibusBin, c.args(seed, args...)...)
}

// must runs `unibus` as seed, fails the test unless it succeeds, and
// returns its standard output.
func (c cli) must(t *testing.T, seed string, args ...string) string {
	t.Helper()
	r := c.run(t, seed, args...)
	if r.code != exitOK {
		t.Fatalf("unibus %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// start starts `unibus` as seed as a long-running subprocess.
func (c cli) start(t *testing.T, name, seed string, args ...string) *proc {
	t.Helper()
	return start(t, name, unibusBin, c.env, c.args(seed, args...)...)
}

// keygen makes an identity with `unibus keygen` and returns its public key.
func keygen(t *testing.T, env []string, seed string) string {
	t.Helper()
	r := runBin(t, env, unibusBin, "keygen", "--out", seed)
	pub := strings.TrimSpace(r.stdout)
	if r.code != exitOK || !strings.HasPrefix(pub, "U") || len(pub) != 56 {
		t.Fatalf("unibus keygen --out %s: %s", seed, r)
	}
	return pub
}
