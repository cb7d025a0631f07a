package main

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
	"github.com/unibus/unibus/tests/testio"
)

// chatPeer is a user of a test node with a seed file and a connection
// whose encryption key is registered (the file beside the seed, as the
// CLI keeps it).
type chatPeer struct {
	id   *identity.Identity
	seed string
	conn *client.Conn
}

func newChatPeer(t *testing.T, n *node.Node, url, dir, name string) chatPeer {
	t.Helper()
	id := nodetest.AddUser(t, n, name, false)
	seed := saveIdentity(t, dir, name, id)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := client.Connect(ctx, url, id)
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.SetEncryptionKey(ctx, client.EncryptionKeyPath(seed)); err != nil {
		t.Fatalf("set %s's encryption key: %v", name, err)
	}
	return chatPeer{id: id, seed: seed, conn: conn}
}

// chatRoomFor creates an encrypted room of owner with the members.
func chatRoomFor(t *testing.T, name string, owner chatPeer, members ...chatPeer) subjects.RoomInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room, err := owner.conn.CreateRoom(ctx, name, subjects.ModeE2E)
	if err != nil {
		t.Fatalf("create room %s: %v", name, err)
	}
	for _, m := range members {
		if _, err := owner.conn.Invite(ctx, room.RoomID, m.id.PublicKey()); err != nil {
			t.Fatalf("invite to %s: %v", name, err)
		}
		if _, err := m.conn.Accept(ctx, room.RoomID); err != nil {
			t.Fatalf("accept %s: %v", name, err)
		}
	}
	return room
}

// receive waits for the next message on ch.
func receive(t *testing.T, ch <-chan client.Message, what string) client.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(15 * time.Second):
		t.Fatalf("no %s within 15s", what)
		return client.Message{}
	}
}

// noChatGoroutines fails unless every goroutine of the chat (the
// session's, its subscriptions', bubbletea's) ends soon after Run
// returned; the test's own subscriptions must have ended.
func noChatGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "charm.land/") || strings.Contains(g, "chatSession") ||
				strings.Contains(g, "cancelreader") || strings.Contains(g, "unibus/client.(*Conn).Subscribe") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d chat goroutines outlived Run:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The command in-process against a real node: what is typed is sealed and
// sent through the client (a reply and a reaction too), what arrives is
// drawn, and /quit ends it with no error.
func TestChatRunSendsAndReceives(t *testing.T) {
	n := nodetest.Run(t)
	url, dir := n.ClientURL(), t.TempDir()
	alice := newChatPeer(t, n, url, dir, "alice")
	bob := newChatPeer(t, n, url, dir, "bob")
	room := chatRoomFor(t, "ops", alice, bob)
	chatRoomFor(t, "dev", alice, bob)

	// Alice listens with the client package.
	got := make(chan client.Message, 16)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sub, err := alice.conn.Subscribe(ctx, room.RoomID, func(m client.Message) { got <- m }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	// Bob chats; his keyboard is a pipe, his screen a buffer.
	keys, typed, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close(); _ = typed.Close() })
	var screen, errOut testio.Buffer
	done := make(chan int, 1)
	go func() {
		done <- cli{server: url}.runTo(t, &screen, &errOut, keys, bob.seed, "chat", "ops")
	}()
	screen.WaitFor(t, "rooms:", 30*time.Second)
	if s := screen.String(); !strings.Contains(s, "#ops") || !strings.Contains(s, "#dev") {
		t.Fatalf("screen lacks the rooms: %q", s)
	}

	// What alice sends is drawn on bob's screen, with her name.
	if _, err := alice.conn.Publish(ctx, room.RoomID, []byte("ping-from-alice")); err != nil {
		t.Fatal(err)
	}
	first := receive(t, got, "echo of alice's own message")
	screen.WaitFor(t, "ping-from-alice", 15*time.Second)
	screen.WaitFor(t, "alice", 15*time.Second)

	// What bob types reaches alice, sealed by his client and verified by hers.
	for _, line := range []string{"hi alice\r", "/reply 1 on it\r", "/react 1 👍\r"} {
		if _, err := typed.WriteString(line); err != nil {
			t.Fatal(err)
		}
	}
	m := receive(t, got, "bob's message")
	if m.Sender != bob.id.PublicKey() || string(m.Data) != "hi alice" || m.Type != e2e.TypeMsg || m.ReplyTo != "" {
		t.Fatalf("bob's message: %+v", m)
	}
	m = receive(t, got, "bob's reply")
	if m.Sender != bob.id.PublicKey() || string(m.Data) != "on it" || m.ReplyTo != first.ID || m.Thread != first.ID {
		t.Fatalf("bob's reply: %+v (want a reply to %s)", m, first.ID)
	}
	m = receive(t, got, "bob's reaction")
	if m.Sender != bob.id.PublicKey() || string(m.Data) != "👍" || m.Type != e2e.TypeReact || m.ReplyTo != first.ID {
		t.Fatalf("bob's reaction: %+v", m)
	}

	if _, err := typed.WriteString("/quit\r"); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != exitcode.OK {
			t.Fatalf("chat exited with %d; stderr %q", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("chat did not end within 15s of /quit")
	}
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	noChatGoroutines(t)
}

// The end of the command's context (SIGINT or SIGTERM in main) ends the
// chat normally.
func TestChatRunInterrupted(t *testing.T) {
	n := nodetest.Run(t)
	url, dir := n.ClientURL(), t.TempDir()
	alice := newChatPeer(t, n, url, dir, "alice")
	chatRoomFor(t, "ops", alice)
	keys, typed, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = keys.Close(); _ = typed.Close() })
	var screen, errOut testio.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--server", url, "--identity", alice.seed, "chat"}, keys, &screen, &errOut, noEnv)
	}()
	screen.WaitFor(t, "#ops", 30*time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("chat returned %v after cancellation", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("chat did not end within 15s of cancellation")
	}
	noChatGoroutines(t)
}

// Failures before the terminal is taken over: the CLI's messages, hints
// and exit codes.
func TestChatRunErrors(t *testing.T) {
	n := nodetest.Run(t)
	url, dir := n.ClientURL(), t.TempDir()
	alice := newChatPeer(t, n, url, dir, "alice")
	bob := newChatPeer(t, n, url, dir, "bob")
	c := cli{server: url}

	// No room yet.
	r := c.run(t, bob.seed, "chat")
	if r.code != exitcode.NotFound || !strings.Contains(r.stderr, "no room") || !strings.Contains(r.stderr, "rooms create") {
		t.Fatalf("chat without rooms: code %d, stderr %q", r.code, r.stderr)
	}
	// A room of others, by ID: refused, not a member.
	private := chatRoomFor(t, "private", alice)
	r = c.run(t, bob.seed, "chat", "--", private.RoomID) // IDs may start with "-"
	if r.code != exitcode.Refused || !strings.Contains(r.stderr, "not a member") || !strings.Contains(r.stderr, "rooms list") {
		t.Fatalf("chat in another's room: code %d, want %d; stderr %q", r.code, exitcode.Refused, r.stderr)
	}
	// By name, or a room that does not exist: none of yours.
	for _, arg := range []string{"private", "no-such-room"} {
		r = c.run(t, bob.seed, "chat", arg)
		if r.code != exitcode.NotFound || !strings.Contains(r.stderr, "none of your rooms") || !strings.Contains(r.stderr, "rooms list") {
			t.Fatalf("chat %s: code %d, want %d; stderr %q", arg, r.code, exitcode.NotFound, r.stderr)
		}
	}
	// Bad usage.
	if r = c.run(t, bob.seed, "chat", "a", "b"); r.code != exitcode.Usage || !strings.Contains(r.stderr, "unibus chat --help") {
		t.Fatalf("chat a b: code %d, stderr %q", r.code, r.stderr)
	}
	// Unreachable server.
	r = cli{server: "nats://" + closedPort(t)}.run(t, bob.seed, "--timeout", "2s", "chat", "ops")
	if r.code != exitcode.Unavailable || !strings.Contains(r.stderr, "is unibusd running?") {
		t.Fatalf("unreachable server: code %d, want %d; stderr %q", r.code, exitcode.Unavailable, r.stderr)
	}
	// Not registered.
	stranger := saveIdentity(t, dir, "stranger", nodetest.NewIdentity(t))
	if r = c.run(t, stranger, "chat"); r.code != exitcode.Refused || !strings.Contains(r.stderr, "not registered") {
		t.Fatalf("unregistered: code %d, stderr %q", r.code, r.stderr)
	}
	// No identity file.
	if r = c.run(t, filepath.Join(dir, "missing.nk"), "chat"); r.code != exitcode.Error || !strings.Contains(r.stderr, "unibus keygen") {
		t.Fatalf("missing identity: code %d, stderr %q", r.code, r.stderr)
	}
}
