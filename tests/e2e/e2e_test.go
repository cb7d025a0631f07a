package e2e_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/unibus/unibus/subjects"
)

// listenLine is one line of `unibus listen --json` (documented in
// `unibus listen --help`).
type listenLine struct {
	ID      string `json:"id"`
	Room    string `json:"room"`
	Sender  string `json:"sender"`
	Type    string `json:"type"`
	Thread  string `json:"thread"`
	ReplyTo string `json:"reply_to"`
	Text    string `json:"text"`
}

// waitMessage waits until the listener has printed a JSON line that match
// accepts, and returns it. Every line must be valid JSON.
func waitMessage(t *testing.T, listener *proc, what string, match func(listenLine) bool, others ...*proc) listenLine {
	t.Helper()
	var found listenLine
	listener.waitFor(t, listener.stdout, what, func() bool {
		for _, l := range listener.stdout.lines() {
			var m listenLine
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("listener printed a line that is not JSON: %q: %v", l, err)
			}
			if match(m) {
				found = m
				return true
			}
		}
		return false
	}, others...)
	return found
}

// TestEndToEnd runs a conversation over the built binaries: an admin made
// with `unibus keygen` registers two users and a bot; alice creates an
// encrypted room and invites bob and the bot, who accept; bob listens
// with --json; alice sends "hello"; bob's listener prints it decrypted
// with alice as the sender, then the worker bot's answer in the message's
// thread and its reaction. A registered non-member and an unregistered identity cannot
// listen to the room; refusals by the live server have their documented
// exit codes. Finally every process stops cleanly on its signal.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	env := testEnv(t)
	seed := func(name string) string { return filepath.Join(dir, name+".nk") }

	adminPub := keygen(t, env, seed("admin"))
	d := startDaemon(t, "unibusd", filepath.Join(dir, "data"), adminPub)
	c := cli{url: d.url, env: env}

	pubs := map[string]string{}
	for _, name := range []string{"alice", "bob", "bot", "mallory", "eve"} {
		pubs[name] = keygen(t, env, seed(name))
	}
	// The admin registers everyone but eve.
	for _, name := range []string{"alice", "bob", "bot", "mallory"} {
		out := c.must(t, seed("admin"), "users", "add", pubs[name], "--name", name)
		if !strings.Contains(out, pubs[name]) {
			t.Fatalf("users add %s printed %q, want its key", name, out)
		}
	}
	// The documented codes of refusals by a live server: a duplicate is a
	// conflict (5), a non-admin may not add users (3).
	if r := c.run(t, seed("admin"), "users", "add", pubs["alice"]); r.code != exitConflict {
		t.Fatalf("adding alice twice: want exit code %d: %s", exitConflict, r)
	}
	if r := c.run(t, seed("alice"), "users", "add", pubs["eve"]); r.code != exitRefused || !strings.Contains(r.stderr, "only administrators") {
		t.Fatalf("users add by a non-admin: want exit code %d: %s", exitRefused, r)
	}
	// bob, the bot and mallory connect once, which registers their
	// encryption keys (kept beside their seed files).
	for _, name := range []string{"bob", "bot", "mallory"} {
		if out := c.must(t, seed(name), "whoami"); !strings.Contains(out, pubs[name]) {
			t.Fatalf("whoami as %s printed %q, want its key", name, out)
		}
		if _, err := os.Stat(seed(name) + ".enc"); err != nil {
			t.Fatalf("whoami as %s did not keep an encryption key: %v", name, err)
		}
	}

	// alice creates an encrypted room (the default) and invites bob and
	// the bot.
	r := c.run(t, seed("alice"), "rooms", "create", "ops")
	room := strings.TrimSpace(r.stdout)
	if r.code != exitOK || subjects.ValidateRoomID(room) != nil || !strings.Contains(r.stderr, "created encrypted room") {
		t.Fatalf("rooms create ops: want a room ID and an encrypted room: %s", r)
	}
	var rooms []struct {
		RoomID string `json:"room_id"`
		Mode   string `json:"mode"`
		Role   string `json:"role"`
	}
	if err := json.Unmarshal([]byte(c.must(t, seed("alice"), "rooms", "list", "--json")), &rooms); err != nil {
		t.Fatalf("rooms list --json: %v", err)
	}
	if len(rooms) != 1 || rooms[0].RoomID != room || rooms[0].Mode != subjects.ModeE2E || rooms[0].Role != subjects.RoleOwner {
		t.Fatalf("alice's rooms: %+v, want only %s, encrypted (%q), owned", rooms, room, subjects.ModeE2E)
	}
	// Room IDs are URL-safe base64 and may start with "-", which would
	// parse as a flag: "--" ends the flags before them.
	for _, name := range []string{"bob", "bot"} {
		if out := c.must(t, seed("alice"), "rooms", "invite", "--", room, pubs[name]); !strings.Contains(out, "must accept") {
			t.Fatalf("rooms invite printed %q, want it to say the invitee must accept", out)
		}
	}
	// An invitation is a proposal: bob accepts it (by the room's name,
	// the only invitation of that name); the bot accepts its own.
	if out := c.must(t, seed("bob"), "rooms", "accept", "ops"); !strings.Contains(out, room) {
		t.Fatalf("rooms accept printed %q, want the room %s", out, room)
	}

	// The bot finds the invitation (its events, or the pending
	// invitations it lists at start), accepts it and subscribes.
	bot := start(t, "worker", workerBin, env, "--identity", seed("bot"), "--server", d.url)
	bot.waitFor(t, bot.stderr, "worker joining room "+room, func() bool {
		return strings.Contains(bot.stderr.String(), `msg="joined room" room=`+room)
	}, d.proc)

	// bob listens; the line on standard error says the subscription is in
	// place.
	listener := c.start(t, "unibus listen (bob)", seed("bob"), "listen", "--json", "--", room)
	listener.waitFor(t, listener.stderr, "listener subscribed", func() bool {
		return strings.Contains(listener.stderr.String(), "listening to 1 room")
	}, d.proc)

	// send prints the message ID and its sequence in the room log.
	out := strings.Fields(c.must(t, seed("alice"), "send", "--", room, "hello"))
	if len(out) != 2 || len(out[0]) != 43 || out[1] == "0" {
		t.Fatalf("send printed %q, want a message ID and its sequence", out)
	}
	sent := out[0]

	hello := waitMessage(t, listener, "alice's hello at bob's listener", func(m listenLine) bool { return m.ID == sent }, bot, d.proc)
	if hello.Text != "hello" || hello.Sender != pubs["alice"] || hello.Room != room || hello.Type != "MSG" ||
		hello.Thread != "" || hello.ReplyTo != "" {
		t.Fatalf("bob received %+v, want alice's (%s) MSG \"hello\" in room %s, not threaded", hello, pubs["alice"], room)
	}
	reply := waitMessage(t, listener, "the bot's reply in alice's thread", func(m listenLine) bool {
		return m.Sender == pubs["bot"] && m.Type == "MSG"
	}, bot, d.proc)
	if reply.ReplyTo != sent || reply.Thread != sent || reply.Text != "echo: hello" || reply.Room != room {
		t.Fatalf("the bot answered %+v, want \"echo: hello\" replying to and threaded on %s", reply, sent)
	}
	react := waitMessage(t, listener, "the bot's reaction", func(m listenLine) bool {
		return m.Sender == pubs["bot"] && m.Type == "REACT"
	}, bot, d.proc)
	if react.ReplyTo != sent || react.Text != "👀" {
		t.Fatalf("the bot reacted %+v, want 👀 to %s", react, sent)
	}

	// No such room: not found (4).
	r = c.run(t, seed("bob"), "send", "--", "no-such-room", "hello")
	if r.code != exitNotFound || !strings.Contains(r.stderr, "none of your rooms has that name or ID") {
		t.Fatalf("send to a room that does not exist: want exit code %d: %s", exitNotFound, r)
	}
	// mallory is registered but not a member: refused (exit code 3).
	r = c.run(t, seed("mallory"), "listen", "--json", "--", room)
	if r.code != exitRefused || !strings.Contains(r.stderr, "not a member") || r.stdout != "" {
		t.Fatalf("listen by a non-member: want exit code %d, \"not a member\" and no output: %s", exitRefused, r)
	}
	// eve is not registered: the bus refuses her connection (exit code 3).
	r = c.run(t, seed("eve"), "listen", "--json", "--", room)
	if r.code != exitRefused || !strings.Contains(r.stderr, "not registered") ||
		!strings.Contains(r.stderr, "unibus users add "+pubs["eve"]) || r.stdout != "" {
		t.Fatalf("listen by an unregistered identity: want exit code %d and the hint to register it: %s", exitRefused, r)
	}

	// Nothing else reached bob: his own listener printed exactly the three
	// frames, all from the room's members.
	if n := len(listener.stdout.lines()); n != 3 {
		t.Fatalf("bob's listener printed %d lines, want 3\n%s", n, listener.describe())
	}
	if s := listener.stderr.String(); strings.Contains(s, "dropped a frame") {
		t.Fatalf("bob's listener dropped frames\n%s", listener.describe())
	}

	// Ctrl-C ends the listener normally; the bot and unibusd stop cleanly
	// on SIGTERM.
	if code := listener.stop(t, os.Interrupt); code != exitOK {
		t.Fatalf("listener exit code %d after SIGINT, want 0\n%s", code, listener.describe())
	}
	if code := bot.stop(t, syscall.SIGTERM); code != exitOK {
		t.Fatalf("worker exit code %d after SIGTERM, want 0\n%s", code, bot.describe())
	}
	if code := d.stop(t, syscall.SIGTERM); code != exitOK {
		t.Fatalf("unibusd exit code %d after SIGTERM, want 0\n%s", code, d.describe())
	}
}
