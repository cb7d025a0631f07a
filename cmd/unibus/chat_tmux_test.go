package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/tests/nodetest"
)

// The chat in a real terminal: two users in two tmux sessions, driven with
// send-keys and read with capture-pane, against a real node.

// tmuxWait bounds every wait for the screen to show something.
const tmuxWait = 15 * time.Second

// tmuxServer is a private tmux server: its own socket in a temporary
// directory and no configuration file, so that a user's tmux is never
// touched. Cleanup kills it.
type tmuxServer struct {
	t      *testing.T
	bin    string
	socket string
}

func newTmuxServer(t *testing.T) *tmuxServer {
	t.Helper()
	bin, err := exec.LookPath("tmux")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("tmux is required for the terminal tests in CI: %v", err)
		}
		t.Skip("tmux not found: `make test-tools` installs it (and `make test` runs it first)")
	}
	s := &tmuxServer{t: t, bin: bin, socket: filepath.Join(t.TempDir(), "tmux.sock")}
	t.Cleanup(func() {
		// The server may be gone already, with its last session.
		_ = exec.Command(s.bin, "-S", s.socket, "kill-server").Run()
	})
	return s
}

// tmux runs one tmux command on the private server and returns its output.
func (s *tmuxServer) tmux(args ...string) string {
	s.t.Helper()
	// -u: UTF-8 output whatever the locale; -f /dev/null: no user config.
	cmd := exec.Command(s.bin, append([]string{"-u", "-f", "/dev/null", "-S", s.socket}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start runs command in a new detached 120×40 session.
func (s *tmuxServer) start(session, command string) {
	s.t.Helper()
	s.tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", "-e", "LANG=C.UTF-8", command)
}

// screen is what the session's pane shows.
func (s *tmuxServer) screen(session string) string {
	s.t.Helper()
	return s.tmux("capture-pane", "-p", "-t", session)
}

// waitUntil polls the session's screen until ok accepts it.
func (s *tmuxServer) waitUntil(session, what string, ok func(screen string) bool) string {
	s.t.Helper()
	deadline := time.Now().Add(tmuxWait)
	for {
		screen := s.screen(session)
		if ok(screen) {
			return screen
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s's screen did not show %s within %s:\n%s", session, what, tmuxWait, screen)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settle waits until the session's screen changes from before, or a
// second passes (a key that changes nothing), and returns the screen.
func (s *tmuxServer) settle(session, before string) string {
	s.t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		screen := s.screen(session)
		if screen != before || time.Now().After(deadline) {
			return screen
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor waits until the session's screen contains sub.
func (s *tmuxServer) waitFor(session, sub string) string {
	s.t.Helper()
	return s.waitUntil(session, fmt.Sprintf("%q", sub), func(screen string) bool { return strings.Contains(screen, sub) })
}

// typeLine types text literally and presses Enter.
func (s *tmuxServer) typeLine(session, text string) {
	s.t.Helper()
	s.tmux("send-keys", "-t", session, "-l", text)
	s.tmux("send-keys", "-t", session, "Enter")
}

// screenLine returns the line of screen containing sub, and the line
// before it.
func screenLine(t *testing.T, screen, sub string) (line, before string) {
	t.Helper()
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if strings.Contains(l, sub) {
			if i > 0 {
				before = lines[i-1]
			}
			return l, before
		}
	}
	t.Fatalf("no line contains %q:\n%s", sub, screen)
	return "", ""
}

// buildUnibus builds the command into dir.
func buildUnibus(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build unibus: %v", err)
	}
	bin := filepath.Join(dir, "unibus")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func TestChatTmux(t *testing.T) {
	tm := newTmuxServer(t)
	began := time.Now()
	dir := t.TempDir()
	bin := buildUnibus(t, dir)
	t.Logf("built unibus in %s", time.Since(began).Round(time.Millisecond))

	n := nodetest.Run(t)
	url := n.ClientURL()
	alice := newChatPeer(t, n, url, dir, "alice")
	bob := newChatPeer(t, n, url, dir, "bob")
	// carol sends from this process while alice's chat runs: one identity
	// must not send from two processes at once (each has its own frame
	// sequence, and receivers take the older one for replays).
	carol := newChatPeer(t, n, url, dir, "carol")
	ops := chatRoomFor(t, "ops", alice, bob, carol)
	chatRoomFor(t, "dev", alice, bob)
	// More messages than a screen holds, before the chats open.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 60 {
		if _, err := alice.conn.Publish(ctx, ops.RoomID, fmt.Appendf(nil, "early %02d", i)); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}

	began = time.Now()
	exits := map[string]string{}
	for name, p := range map[string]chatPeer{"alice": alice, "bob": bob} {
		exits[name] = filepath.Join(dir, name+".exit")
		// The exit code lands in a file when the chat ends.
		tm.start(name, strings.Join([]string{
			shellQuote(bin), "--identity", shellQuote(p.seed), "--server", shellQuote(url), "chat", "ops",
			"; echo $? >", shellQuote(exits[name]),
		}, " "))
	}
	// Each header shows the room, that it is encrypted, the own name, and
	// the list of rooms.
	for _, name := range []string{"alice", "bob"} {
		screen := tm.waitUntil(name, "the header", func(s string) bool {
			return strings.Contains(s, "unibus chat · #ops · encrypted · "+name+" (you)") &&
				strings.Contains(s, "rooms: #ops #dev") || strings.Contains(s, "rooms: #dev #ops")
		})
		if l, _ := screenLine(t, screen, "rooms:"); !strings.Contains(l, "#dev") {
			t.Fatalf("%s's room list %q", name, l)
		}
	}
	// ops opens with its last screenful: the last messages sent before,
	// not the first ones.
	for _, name := range []string{"alice", "bob"} {
		screen := tm.waitFor(name, "early 59")
		if !strings.Contains(screen, "early 30") || strings.Contains(screen, "early 00") {
			t.Fatalf("%s's chat opened with:\n%s", name, screen)
		}
	}

	// Alice types a message; bob's screen shows it, numbered, with her name.
	tm.typeLine("alice", "hello from alice")
	screen := tm.waitUntil("bob", "alice's message with her name", func(s string) bool {
		return strings.Contains(s, "alice: hello from alice")
	})
	l, _ := screenLine(t, screen, "hello from alice")
	num, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(l), "["), "]")
	if _, err := strconv.Atoi(num); err != nil {
		t.Fatalf("bob sees %q, want a numbered message", l)
	}
	if e, _ := screenLine(t, screen, "early 59"); !strings.HasPrefix(strings.TrimSpace(e), fmt.Sprintf("[%d]", mustAtoi(t, num)-1)) {
		t.Fatalf("bob sees %q before [%s]", e, num)
	}

	// Bob answers it in its thread and reacts; alice's screen shows the
	// reply indented under it and the count beside it.
	tm.typeLine("bob", "/reply "+num+" on it, alice")
	tm.typeLine("bob", "/react "+num+" 👍")
	screen = tm.waitUntil("alice", "bob's reply under her message and his reaction", func(s string) bool {
		return strings.Contains(s, "on it, alice") && strings.Contains(s, "👍 1")
	})
	// Numbers are each screen's own: the reply is numbered after alice's
	// message on her screen.
	mine, _ := screenLine(t, screen, "hello from alice")
	aliceNum, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(mine), "["), "]")
	reply, above := screenLine(t, screen, "on it, alice")
	if !strings.HasPrefix(reply, fmt.Sprintf("  ↳ [%d]", mustAtoi(t, aliceNum)+1)) || !strings.Contains(reply, "bob: on it, alice") || !strings.Contains(above, "hello from alice") {
		t.Fatalf("thread on alice's screen:\n%q\n%q\nwhole screen:\n%s", above, reply, screen)
	}
	if l, _ := screenLine(t, screen, "hello from alice"); !strings.Contains(l, "👍 1") {
		t.Fatalf("reaction not beside the message: %q", l)
	}

	// Alice switches rooms with Tab: dev is opened, ops's messages go.
	tm.tmux("send-keys", "-t", "alice", "Tab")
	tm.waitUntil("alice", "dev opened", func(s string) bool {
		l, _ := screenLine(t, s, "unibus chat")
		return strings.Contains(l, "#dev") && !strings.Contains(s, "hello from alice")
	})
	// Bob writes in ops: alice sees it counted as unread in the header
	// (the messages ops opened with are not unread).
	tm.typeLine("bob", "are you there?")
	tm.waitFor("alice", "#ops (1)")

	// More than a screenful more: the early messages scroll away from
	// bob's screen; PgUp scrolls back to them, loading those ops did not
	// open with, up to the beginning of the room.
	for i := range 45 {
		if _, err := carol.conn.Publish(ctx, ops.RoomID, fmt.Appendf(nil, "late %02d", i)); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	screen = tm.waitFor("bob", "late 44")
	if strings.Contains(screen, "early 59") {
		t.Fatalf("bob's screen still shows the early messages:\n%s", screen)
	}
	for presses := 0; !strings.Contains(screen, "early 00"); presses++ {
		if presses == 10 {
			t.Fatalf("early 00 not shown after 10 PgUps:\n%s", screen)
		}
		tm.tmux("send-keys", "-t", "bob", "PageUp")
		screen = tm.settle("bob", screen)
	}
	tm.waitFor("bob", "the beginning of #ops")
	if l, _ := screenLine(t, screen, "early 00"); !strings.HasPrefix(strings.TrimSpace(l), "[1]") {
		t.Fatalf("the first message is %q, want [1]", l)
	}
	// PgDn goes back down to the newest.
	for presses := 0; !strings.Contains(screen, "late 44"); presses++ {
		if presses == 10 {
			t.Fatalf("late 44 not shown after 10 PgDns:\n%s", screen)
		}
		tm.tmux("send-keys", "-t", "bob", "PageDown")
		screen = tm.settle("bob", screen)
	}

	// Both leave cleanly: Ctrl+C and /quit, exit code 0.
	tm.tmux("send-keys", "-t", "alice", "C-c")
	tm.typeLine("bob", "/quit")
	for name, file := range exits {
		deadline := time.Now().Add(tmuxWait)
		for {
			b, err := os.ReadFile(file)
			if err == nil && strings.HasSuffix(string(b), "\n") {
				if code := strings.TrimSpace(string(b)); code != "0" {
					t.Fatalf("%s's chat exited with %s", name, code)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's chat did not exit within %s", name, tmuxWait)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("terminal session took %s", time.Since(began).Round(time.Millisecond))
}
