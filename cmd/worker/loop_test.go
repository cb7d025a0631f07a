package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
	"github.com/unibus/unibus/tests/testio"
)

// TestTwoBotsDoNotLoop: two copies of the bot in one room answer a
// person's message once each and never each other's answers (before, two
// bots exchanged 4,955 messages in 5 s), nor a person's reply.
func TestTwoBotsDoNotLoop(t *testing.T) {
	n := nodetest.Run(t)
	ctx := context.Background()
	dir := t.TempDir()
	aliceID := nodetest.AddUser(t, n, "alice", false)
	alice, err := client.Connect(ctx, n.ClientURL(), aliceID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = alice.Close() })
	if err := alice.SetEncryptionKey(ctx, filepath.Join(dir, "alice.nk.enc")); err != nil {
		t.Fatal(err)
	}
	room, err := alice.CreateRoom(ctx, "bots", subjects.ModeCleartext)
	if err != nil {
		t.Fatal(err)
	}
	bots := map[string]bool{}
	var logs testio.Buffer
	for i := range 2 {
		id := nodetest.AddUser(t, n, fmt.Sprintf("bot%d", i), false)
		seed := filepath.Join(dir, fmt.Sprintf("bot%d.nk", i))
		if err := identity.Save(seed, id); err != nil {
			t.Fatal(err)
		}
		bots[id.PublicKey()] = true
		w := &worker{IdentityFile: seed, Server: n.ClientURL(),
			Logger: slog.New(slog.NewTextHandler(&logs, nil)).With("bot", i)}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(runCtx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("bot %d: %v", i, err)
			}
		})
		if _, err := alice.Invite(ctx, room.RoomID, id.PublicKey()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bot logs:\n%s", logs.String())
		}
	})
	msgs := make(chan client.Message, 1024)
	sub, err := alice.Subscribe(ctx, room.RoomID, func(m client.Message) { msgs <- m }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	// The bots join when their invitations' events reach them.
	waitUntil(t, 30*time.Second, "both bots to join", func() bool {
		return strings.Count(logs.String(), `room=`+room.RoomID+` from=`) == 2 // "joined room" lines
	})

	// answered sends text once and collects the bots' answers to it, one
	// each; every other message is kept in others.
	var others []client.Message
	answered := func(text string) (answers []string) {
		t.Helper()
		sent, err := alice.Publish(ctx, room.RoomID, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		deadline := time.After(60 * time.Second)
		for len(got) < 2 {
			select {
			case m := <-msgs:
				if bots[m.Sender] && m.Type == e2e.TypeMsg && m.ReplyTo == sent.ID {
					if got[m.Sender] {
						t.Errorf("bot %s answered %q twice", m.Sender, text)
					}
					got[m.Sender] = true
					answers = append(answers, m.ID)
					continue
				}
				others = append(others, m)
			case <-deadline:
				t.Fatalf("%q answered by %d of 2 bots within 60s", text, len(got))
			}
		}
		return answers
	}
	answers := answered("hi")
	// A person's reply to a bot's answer, in the thread: the bots leave
	// it alone, as they leave each other's answers.
	reply, err := alice.PublishReply(ctx, room.RoomID, answers[0], []byte("thanks"))
	if err != nil {
		t.Fatal(err)
	}
	// The bots handle a room's messages in order: once both answered this
	// one, they have handled everything before it.
	others = nil
	answered("done")
	for _, m := range others {
		if !bots[m.Sender] || m.Type != e2e.TypeMsg {
			continue
		}
		if strings.HasPrefix(string(m.Data), "echo: echo") || m.ReplyTo == reply.ID {
			t.Errorf("a bot answered an answer or a reply: %q… (%d bytes, reply to %s)", m.Data[:min(len(m.Data), 40)], len(m.Data), m.ReplyTo)
		}
	}
}
