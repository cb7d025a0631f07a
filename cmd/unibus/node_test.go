package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/tests/nodetest"
	"github.com/unibus/unibus/tests/testio"
)

// Tests against a real node: TLS, auth callout, signed requests enforced.

func TestCLIEndToEnd(t *testing.T) {
	n, ca := nodetest.RunTLS(t)
	c := cli{server: n.ClientURL(), ca: ca}
	dir := t.TempDir()
	admin := saveIdentity(t, dir, "admin", nodetest.AddUser(t, n, "admin", true))

	// New users make their identities with keygen.
	alice, bob, carol := filepath.Join(dir, "alice.nk"), filepath.Join(dir, "bob.nk"), filepath.Join(dir, "carol.nk")
	pubs := map[string]string{}
	for _, f := range []string{alice, bob, carol} {
		r := c.run(t, f, "keygen")
		if r.code != exitcode.OK {
			t.Fatalf("keygen %s: code %d, stderr %q", f, r.code, r.stderr)
		}
		pubs[f] = strings.TrimSpace(r.stdout)
	}

	// Not registered yet: refused at connect, with the fix.
	r := c.run(t, alice, "whoami")
	if r.code != exitcode.Refused || !strings.Contains(r.stderr, "not registered") ||
		!strings.Contains(r.stderr, "unibus users add "+pubs[alice]) {
		t.Fatalf("unregistered whoami: code %d, stderr %q", r.code, r.stderr)
	}

	// The admin registers alice and bob.
	for _, f := range []string{alice, bob} {
		name := strings.TrimSuffix(filepath.Base(f), ".nk")
		if r := c.run(t, admin, "users", "add", pubs[f], "--name", name); r.code != exitcode.OK || !strings.Contains(r.stdout, pubs[f]) {
			t.Fatalf("users add %s: code %d, stdout %q, stderr %q", name, r.code, r.stdout, r.stderr)
		}
	}
	r = c.run(t, admin, "users", "add", pubs[alice])
	if r.code != exitcode.Conflict {
		t.Fatalf("adding alice twice: code %d, want %d; stderr %q", r.code, exitcode.Conflict, r.stderr)
	}
	r = c.run(t, admin, "users", "list", "--json")
	var users []userJSON
	if r.code != exitcode.OK || json.Unmarshal([]byte(r.stdout), &users) != nil {
		t.Fatalf("users list --json: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if i := slices.IndexFunc(users, func(u userJSON) bool { return u.Pub == pubs[bob] }); i < 0 || users[i].Name != "bob" || users[i].Admin {
		t.Fatalf("bob not listed as a plain user: %+v", users)
	}

	// A non-admin may not add users.
	r = c.run(t, alice, "users", "add", pubs[carol])
	if r.code != exitcode.Refused || !strings.Contains(r.stderr, "only administrators") {
		t.Fatalf("non-admin users add: code %d, want %d; stderr %q", r.code, exitcode.Refused, r.stderr)
	}

	// Bob connects once, which registers his encryption key.
	r = c.run(t, bob, "whoami")
	if r.code != exitcode.OK || !strings.Contains(r.stdout, pubs[bob]) || !strings.Contains(r.stdout, "bob") {
		t.Fatalf("whoami: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := fileMode(t, bob+".enc"); got != 0o600 {
		t.Fatalf("encryption key mode %04o, want 0600", got)
	}

	// Alice creates an encrypted room and invites bob, by room name.
	r = c.run(t, alice, "rooms", "create", "ops")
	roomID := strings.TrimSpace(r.stdout)
	if r.code != exitcode.OK || roomID == "" {
		t.Fatalf("rooms create: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := c.run(t, alice, "rooms", "invite", "ops", pubs[bob]); r.code != exitcode.OK || !strings.Contains(r.stdout, "unibus rooms accept "+roomID) {
		t.Fatalf("rooms invite: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// An invitation, not a membership: bob lists it and accepts it.
	r = c.run(t, bob, "rooms", "invitations", "--json")
	var invs []invitationJSON
	if r.code != exitcode.OK || json.Unmarshal([]byte(r.stdout), &invs) != nil {
		t.Fatalf("rooms invitations --json: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if len(invs) != 1 || invs[0].RoomID != roomID || invs[0].Name != "ops" || invs[0].Owner != pubs[alice] || invs[0].Epoch != 1 || !invs[0].ExpiresAt.After(invs[0].InvitedAt) {
		t.Fatalf("bob's invitations: %+v", invs)
	}
	if r := c.run(t, bob, "send", "ops", "too early"); r.code != exitcode.NotFound {
		t.Fatalf("send before accepting: code %d, want %d; stderr %q", r.code, exitcode.NotFound, r.stderr)
	}
	if r := c.run(t, bob, "rooms", "accept", "ops"); r.code != exitcode.OK || !strings.Contains(r.stdout, roomID) {
		t.Fatalf("rooms accept: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := c.run(t, bob, "rooms", "accept", "ops"); r.code != exitcode.NotFound || !strings.Contains(r.stderr, "rooms invitations") {
		t.Fatalf("accepting again: code %d, want %d; stderr %q", r.code, exitcode.NotFound, r.stderr)
	}
	r = c.run(t, bob, "rooms", "list", "--json")
	var rooms []roomJSON
	if r.code != exitcode.OK || json.Unmarshal([]byte(r.stdout), &rooms) != nil {
		t.Fatalf("rooms list --json: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if len(rooms) != 1 || rooms[0].RoomID != roomID || rooms[0].Name != "ops" || rooms[0].Role != "member" || rooms[0].Mode != "e2e" {
		t.Fatalf("bob's rooms: %+v", rooms)
	}
	r = c.run(t, bob, "rooms", "members", roomID)
	if r.code != exitcode.OK || !strings.Contains(r.stdout, pubs[alice]) || !strings.Contains(r.stdout, pubs[bob]) {
		t.Fatalf("rooms members: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// Bob listens for one message; alice sends it.
	msg := listenWhile(t, c, bob, []string{"listen", "ops", "--json", "--count", "1"}, func() {
		r := c.run(t, alice, "send", "ops", "hello", "bob")
		if r.code != exitcode.OK {
			t.Errorf("send: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		if id, seq := parseSent(t, r.stdout); len(id) != 43 || seq == 0 {
			t.Errorf("send printed %q, want the message ID and its seq", r.stdout)
		}
	})
	if len(msg) != 1 {
		t.Fatalf("listen --count 1 printed %d messages", len(msg))
	}
	m := msg[0]
	if m.Text != "hello bob" || m.Room != roomID || m.Sender != pubs[alice] || m.Type != "MSG" ||
		len(m.ID) != 43 || m.Thread != "" || m.ReplyTo != "" || time.Since(m.Time) > time.Minute {
		t.Fatalf("received %+v", m)
	}

	// Bob answers in the thread and reacts; alice sees both.
	got := listenWhile(t, c, alice, []string{"listen", roomID, "--json", "--count", "2"}, func() {
		if r := c.run(t, bob, "send", "--reply-to", m.ID, "ops", "on it"); r.code != exitcode.OK {
			t.Errorf("send --reply-to: code %d, stderr %q", r.code, r.stderr)
		}
		if r := c.run(t, bob, "react", "ops", m.ID, "👍"); r.code != exitcode.OK {
			t.Errorf("react: code %d, stderr %q", r.code, r.stderr)
		}
	})
	if len(got) != 2 || got[0].Text != "on it" || got[0].Thread != m.ID || got[0].ReplyTo != m.ID ||
		got[1].Type != "REACT" || got[1].Text != "👍" || got[1].ReplyTo != m.ID || got[1].Sender != pubs[bob] {
		t.Fatalf("thread and reaction: %+v", got)
	}

	// Only the owner rekeys; the owner's rekey raises the epoch.
	if r := c.run(t, bob, "rooms", "rekey", "ops"); r.code != exitcode.Refused {
		t.Fatalf("member rekey: code %d, want %d; stderr %q", r.code, exitcode.Refused, r.stderr)
	}
	if r := c.run(t, alice, "rooms", "rekey", "ops"); r.code != exitcode.OK || !strings.Contains(r.stdout, "epoch 2") {
		t.Fatalf("owner rekey: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// Removed, bob no longer finds the room.
	if r := c.run(t, alice, "rooms", "remove", "ops", pubs[bob]); r.code != exitcode.OK {
		t.Fatalf("rooms remove: code %d, stderr %q", r.code, r.stderr)
	}
	if r := c.run(t, bob, "send", roomID, "still here?"); r.code != exitcode.NotFound && r.code != exitcode.Refused {
		t.Fatalf("send after removal: code %d, stderr %q", r.code, r.stderr)
	}
	if r := c.run(t, bob, "send", "no-such-room", "hi"); r.code != exitcode.NotFound || !strings.Contains(r.stderr, "rooms list") {
		t.Fatalf("send to an unknown room: code %d, want %d; stderr %q", r.code, exitcode.NotFound, r.stderr)
	}

	// Revoked, bob is refused at connect.
	if r := c.run(t, admin, "users", "revoke", pubs[bob]); r.code != exitcode.OK {
		t.Fatalf("users revoke: code %d, stderr %q", r.code, r.stderr)
	}
	if r := c.run(t, bob, "whoami"); r.code != exitcode.Refused {
		t.Fatalf("revoked whoami: code %d, want %d; stderr %q", r.code, exitcode.Refused, r.stderr)
	}
}

// listenWhile runs a listen command line as identityFile, calls send once
// it is subscribed, and returns the JSON lines it printed.
func listenWhile(t *testing.T, c cli, identityFile string, args []string, send func()) []messageJSON {
	t.Helper()
	var out, errOut testio.Buffer
	done := make(chan int, 1)
	go func() { done <- c.runTo(t, &out, &errOut, nil, identityFile, args...) }()
	errOut.WaitFor(t, "listening to", 30*time.Second)
	send()
	select {
	case code := <-done:
		if code != exitcode.OK {
			t.Fatalf("listen: code %d, stderr %q", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("listen did not return within 30s; stdout %q, stderr %q", out.String(), errOut.String())
	}
	var msgs []messageJSON
	for line := range strings.Lines(out.String()) {
		var m messageJSON
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("listen printed a line that is not JSON: %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// The listen command ends cleanly when its context does (Ctrl-C), and Run
// is callable without cobra.
func TestListenRunStopsOnCancel(t *testing.T) {
	n, ca := nodetest.RunTLS(t)
	dir := t.TempDir()
	seed := saveIdentity(t, dir, "alice", nodetest.AddUser(t, n, "alice", false))
	var out, errOut testio.Buffer
	a := &app{Stdout: &out, Stderr: &errOut, IdentityFile: seed, Server: n.ClientURL(), CA: ca, Timeout: 30 * time.Second}
	t.Cleanup(func() { _ = a.Close() })
	ctx := context.Background()
	var created testio.Buffer
	create := &roomsCreateCommand{app: &app{Stdout: &created, Stderr: &errOut, IdentityFile: seed, Server: n.ClientURL(), CA: ca, Timeout: 30 * time.Second}}
	if err := create.Run(ctx, []string{"cli"}); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = create.app.Close() })
	roomID := strings.TrimSpace(created.String())

	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- (&listenCommand{app: a}).Run(ctx, []string{roomID}) }()
	errOut.WaitFor(t, "listening to 1 room", 30*time.Second)

	// A fresh connection, like a new `unibus send`: the creator's own
	// connection may publish only after the bus refreshes its permissions.
	var sent testio.Buffer
	send := &sendCommand{app: &app{Stdout: &sent, Stderr: &errOut, IdentityFile: seed, Server: n.ClientURL(), CA: ca, Timeout: 30 * time.Second}}
	t.Cleanup(func() { _ = send.app.Close() })
	if err := send.Run(context.Background(), []string{"cli", "line one\nline two \x1b[31m"}); err != nil {
		t.Fatalf("send: %v", err)
	}
	id, _ := parseSent(t, sent.String())
	out.WaitFor(t, id, 30*time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("listen returned %v after cancellation", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("listen did not stop within 30s of cancellation")
	}
	line := out.String()
	if !strings.Contains(line, "#cli") || !strings.Contains(line, "line one\n    line two \uFFFD[31m") {
		t.Fatalf("human line %q", line)
	}
}

// A server certificate the pinned CA did not sign is refused with a hint.
func TestUntrustedServerCertificate(t *testing.T) {
	n, _ := nodetest.RunTLS(t)
	other, err := certs.WriteDevCA(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	seed := saveIdentity(t, t.TempDir(), "alice", nodetest.AddUser(t, n, "alice", false))
	r := cli{server: n.ClientURL(), ca: other.CACert}.run(t, seed, "whoami")
	if r.code != exitcode.Error || !strings.Contains(r.stderr, "certificate is not trusted") {
		t.Fatalf("untrusted certificate: code %d, want %d; stderr %q", r.code, exitcode.Error, r.stderr)
	}
}

// TestLostEncryptionKeyFile: with FILE.enc gone while a key is registered,
// commands refuse (with the way out) instead of making a new key that
// would cost every room key; --replace-encryption-key makes one on purpose.
func TestLostEncryptionKeyFile(t *testing.T) {
	n, ca := nodetest.RunTLS(t)
	c := cli{server: n.ClientURL(), ca: ca}
	seed := saveIdentity(t, t.TempDir(), "alice", nodetest.AddUser(t, n, "alice", false))
	if r := c.run(t, seed, "whoami"); r.code != exitcode.OK {
		t.Fatalf("whoami: code %d, stderr %q", r.code, r.stderr)
	}
	keyFile := client.EncryptionKeyPath(seed)
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	r := c.run(t, seed, "rooms", "list")
	if r.code != exitcode.Error || !strings.Contains(r.stderr, "restore your encryption key file") || !strings.Contains(r.stderr, "--replace-encryption-key") {
		t.Fatalf("rooms list with the key file gone: code %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(keyFile); !os.IsNotExist(err) {
		t.Fatalf("a key file was made: %v", err)
	}
	if r := c.run(t, seed, "whoami", "--replace-encryption-key"); r.code != exitcode.OK {
		t.Fatalf("whoami --replace-encryption-key: code %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(keyFile); err != nil {
		t.Fatalf("no new key file: %v", err)
	}
	if r := c.run(t, seed, "rooms", "list"); r.code != exitcode.OK {
		t.Fatalf("rooms list with the new key: code %d, stderr %q", r.code, r.stderr)
	}
}
