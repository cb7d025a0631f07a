package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
	"github.com/unibus/unibus/tests/testio"
)

// waitUntil polls cond every 20ms for up to d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // poll interval; the deadline bounds the wait
	}
}

func TestWorkerAnswersInThreadAndReacts(t *testing.T) {
	n := nodetest.Run(t)
	ctx := context.Background()
	dir := t.TempDir()
	aliceID := nodetest.AddUser(t, n, "alice", false)
	botID := nodetest.AddUser(t, n, "bot", false)
	botSeed := filepath.Join(dir, "bot.nk")
	if err := identity.Save(botSeed, botID); err != nil {
		t.Fatal(err)
	}

	var logs testio.Buffer
	w := &worker{
		IdentityFile: botSeed,
		Server:       n.ClientURL(),
		Logger:       slog.New(slog.NewTextHandler(&logs, nil)),
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()

	alice, err := client.Connect(ctx, n.ClientURL(), aliceID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = alice.Close() })
	if err := alice.SetEncryptionKey(ctx, filepath.Join(dir, "alice.nk.enc")); err != nil {
		t.Fatal(err)
	}
	// The bot registers its encryption key when it starts; alice can seal
	// the room key to it only then.
	waitUntil(t, 30*time.Second, "the bot's encryption key", func() bool {
		u, err := alice.GetUser(ctx, botID.PublicKey())
		return err == nil && len(u.EncKey) > 0
	})
	room, err := alice.CreateRoom(ctx, "bots", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, botID.PublicKey()); err != nil {
		t.Fatal(err)
	}
	msgs := make(chan client.Message, 64)
	sub, err := alice.Subscribe(ctx, room.RoomID, func(m client.Message) { msgs <- m }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bot log:\n%s", logs.String())
		}
	})
	waitUntil(t, 30*time.Second, "the bot to join", func() bool {
		return strings.Contains(logs.String(), `msg="joined room" room=`+room.RoomID)
	})

	// One message, one answer: a reply in its thread and a reaction.
	hi, err := alice.Publish(ctx, room.RoomID, []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]bool{hi.ID: true}
	var reply, react *client.Message
	deadline := time.After(30 * time.Second)
	for reply == nil || react == nil {
		select {
		case m := <-msgs:
			switch {
			case m.Sender != botID.PublicKey():
			case m.Type == e2e.TypeMsg && reply == nil:
				reply = &m
			case m.Type == e2e.TypeReact && react == nil:
				react = &m
			default:
				t.Fatalf("a second answer: %+v", m)
			}
		case <-deadline:
			t.Fatalf("no reply and reaction within 30s (reply %v, reaction %v); bot log:\n%s", reply, react, logs.String())
		}
	}
	if !sent[reply.ReplyTo] || reply.Thread != reply.ReplyTo || string(reply.Data) != "echo: hi" {
		t.Fatalf("reply %+v does not answer one of alice's messages %v", reply, sent)
	}
	if !sent[react.ReplyTo] || string(react.Data) != "👀" {
		t.Fatalf("reaction %+v does not target one of alice's messages", react)
	}
	// The bot ignores its own messages and reactions: nothing answers the
	// reply or the reaction. The bot handles the room's messages in order,
	// so once it has answered a message alice sends now, after its reply
	// and reaction, it has seen those too: any answer to them came first.
	last, err := alice.Publish(ctx, room.RoomID, []byte("last"))
	if err != nil {
		t.Fatal(err)
	}
	sent[last.ID] = true
	lastDeadline := time.After(30 * time.Second)
	for answered := false; !answered; {
		select {
		case m := <-msgs:
			if m.Sender != botID.PublicKey() {
				continue
			}
			if !sent[m.ReplyTo] {
				t.Fatalf("the bot answered something other than alice's messages: %+v", m)
			}
			answered = m.Type == e2e.TypeMsg && m.ReplyTo == last.ID
		case <-lastDeadline:
			t.Fatal("the bot did not answer alice's last message within 30s")
		}
	}
	for len(msgs) > 0 {
		if m := <-msgs; m.Sender == botID.PublicKey() && !sent[m.ReplyTo] {
			t.Fatalf("the bot answered something other than alice's messages: %+v", m)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancellation", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of cancellation")
	}
}

func TestWorkerFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"no identity", nil, nil, exitcode.Usage, "UNIBUS_IDENTITY"},
		{"unknown flag", []string{"--nope"}, nil, exitcode.Usage, "nope"},
		{"argument", []string{"--identity", "x.nk", "extra"}, nil, exitcode.Usage, "extra"},
		{"poll is gone", []string{"--poll", "3s"}, map[string]string{envIdentity: "x.nk"}, exitcode.Usage, "-poll"},
		{"bad accept-from", []string{"--accept-from", "UABC,bob"}, map[string]string{envIdentity: "x.nk"}, exitcode.Usage, "--accept-from"},
		{"missing identity file", nil, map[string]string{envIdentity: filepath.Join(t.TempDir(), "none.nk")}, exitcode.Error, "none.nk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr testio.Buffer
			code := run(context.Background(), tc.args, &stderr, env(tc.env))
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("code %d, want %d; stderr %q, want it to mention %q", code, tc.code, stderr.String(), tc.want)
			}
		})
	}
}

// TestWorkerInsecure: a plaintext server URL beyond loopback is a usage
// error (exit 2) that names the fix, unless --insecure or UNIBUS_INSECURE
// allows it; then the worker dials it.
func TestWorkerInsecure(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(t.TempDir(), "bot.nk")
	if err := identity.Save(seed, id); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want []string
	}{
		{"plaintext beyond loopback", []string{"--identity", seed, "--server", "nats://10.1.2.3:4222"}, nil,
			exitcode.Usage, []string{"10.1.2.3 is not a loopback address", "--insecure", "UNIBUS_INSECURE=1", "tls://"}},
		{"scheme-less beyond loopback from the environment", nil, map[string]string{envIdentity: seed, envServer: "bus.example:4222"},
			exitcode.Usage, []string{"bus.example is not a loopback address", "--insecure"}},
		{"one of several beyond loopback", []string{"--identity", seed, "--server", "nats://127.0.0.1:1,nats://bus.example:4222"}, nil,
			exitcode.Usage, []string{"server 2 of 2", "--insecure"}},
		{"malformed UNIBUS_INSECURE", []string{"--identity", seed}, map[string]string{envInsecure: "maybe"},
			exitcode.Usage, []string{`UNIBUS_INSECURE="maybe"`}},
		{"pinned CA with a plaintext URL", []string{"--identity", seed, "--ca", seed, "--server", "nats://127.0.0.1:1"}, nil,
			exitcode.Usage, []string{"tls://"}},
		{"loopback needs no opt-in", []string{"--identity", seed, "--server", "nats://127.0.0.1:1"}, nil,
			exitcode.Unavailable, []string{"connect to unibus at nats://127.0.0.1:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr testio.Buffer
			code := run(context.Background(), tc.args, &stderr, env(tc.env))
			if code != tc.code {
				t.Fatalf("code %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			for _, want := range tc.want {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q does not mention %q", stderr.String(), want)
				}
			}
		})
	}

	// With the opt-in, a local address that is not loopback, where nothing
	// listens, is dialed: the bus is unreachable, not refused.
	far := natstest.ClosedNonLoopbackAddr(t)
	for _, c := range []struct {
		args []string
		env  map[string]string
	}{
		{args: []string{"--insecure"}},
		{env: map[string]string{envInsecure: "1"}},
	} {
		var stderr testio.Buffer
		args := append([]string{"--identity", seed, "--server", "nats://" + far}, c.args...)
		if code := run(context.Background(), args, &stderr, env(c.env)); code != exitcode.Unavailable {
			t.Fatalf("%q %v: code %d, want %d; stderr %q", args, c.env, code, exitcode.Unavailable, stderr.String())
		}
	}
}

// TestWorkerAcceptsFromListedOwners: with AcceptFrom, the bot accepts the
// invitations of the listed owners and leaves the others pending (an
// invitation grants it nothing until it accepts).
func TestWorkerAcceptsFromListedOwners(t *testing.T) {
	n := nodetest.Run(t)
	ctx := context.Background()
	dir := t.TempDir()
	botID := nodetest.AddUser(t, n, "bot", false)
	botSeed := filepath.Join(dir, "bot.nk")
	if err := identity.Save(botSeed, botID); err != nil {
		t.Fatal(err)
	}
	owner := func(name string) *client.Conn {
		t.Helper()
		c, err := client.Connect(ctx, n.ClientURL(), nodetest.AddUser(t, n, name, false))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if err := c.SetEncryptionKey(ctx, filepath.Join(dir, name+".nk.enc")); err != nil {
			t.Fatal(err)
		}
		return c
	}
	alice, mallory := owner("alice"), owner("mallory")

	var logs testio.Buffer
	w := &worker{IdentityFile: botSeed, Server: n.ClientURL(),
		AcceptFrom: []string{alice.Identity().PublicKey()}, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		if t.Failed() {
			t.Logf("bot log:\n%s", logs.String())
		}
	})
	waitUntil(t, 30*time.Second, "the bot's encryption key", func() bool {
		u, err := alice.GetUser(ctx, botID.PublicKey())
		return err == nil && len(u.EncKey) > 0
	})
	spam, err := mallory.CreateRoom(ctx, "spam", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mallory.Invite(ctx, spam.RoomID, botID.PublicKey()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the bot to leave mallory's invitation pending", func() bool {
		return strings.Contains(logs.String(), `msg="invitation left pending: its owner is not in --accept-from" room=`+spam.RoomID)
	})
	ops, err := alice.CreateRoom(ctx, "ops", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, ops.RoomID, botID.PublicKey()); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the bot to join alice's room", func() bool {
		return strings.Contains(logs.String(), `msg="joined room" room=`+ops.RoomID)
	})
	members, err := mallory.Members(ctx, spam.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.Pub == botID.PublicKey() && m.Role != subjects.RoleInvited {
			t.Errorf("the bot in mallory's room: %+v, want still invited", m)
		}
	}
	if strings.Contains(logs.String(), `msg="accepted invitation" room=`+spam.RoomID) {
		t.Error("the bot accepted mallory's invitation")
	}
}
