package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
	"github.com/unibus/unibus/tests/testio"
)

// Durable delivery: the bot answers every message exactly once across
// crashes, follows invitations and removals as events, without polling.

// owner is a user that makes rooms and talks to the bot.
type owner struct {
	*client.Conn
}

func newOwner(t *testing.T, n *node.Node, name string) owner {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, n.ClientURL(), nodetest.AddUser(t, n, name, false))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := c.SetEncryptionKey(ctx, filepath.Join(t.TempDir(), name+".nk.enc")); err != nil {
		t.Fatal(err)
	}
	return owner{c}
}

// newBot registers a bot and writes its seed file; it returns the
// identity and the seed's path.
func newBot(t *testing.T, n *node.Node, dir string) (*identity.Identity, string) {
	t.Helper()
	id := nodetest.AddUser(t, n, "bot", false)
	seed := filepath.Join(dir, "bot.nk")
	if err := identity.Save(seed, id); err != nil {
		t.Fatal(err)
	}
	return id, seed
}

// runWorker runs w in this process until the test ends or the returned
// stop is called (which waits for Run and checks its error).
func runWorker(t *testing.T, w *worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("worker did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// answers counts, per message ID, the bot's replies and reactions in the
// room's log.
func answers(t *testing.T, c owner, roomID, bot string) (replies, reactions map[string]int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	replies, reactions = map[string]int{}, map[string]int{}
	q := client.HistoryQuery{Limit: subjects.MaxHistoryLimit}
	for {
		page, err := c.History(ctx, roomID, q)
		if err != nil {
			t.Fatalf("history: %v", err)
		}
		for _, e := range page.Rejected {
			t.Errorf("history: rejected frame: %v", e)
		}
		for _, m := range page.Messages {
			if m.Sender != bot {
				continue
			}
			switch m.Type {
			case e2e.TypeMsg:
				replies[m.ReplyTo]++
			case e2e.TypeReact:
				reactions[m.ReplyTo]++
			}
		}
		if page.Next == 0 {
			return replies, reactions
		}
		q.From = page.Next
	}
}

// checkOnce fails unless every message of ids has exactly one reply and
// one reaction of the bot, and the bot answered nothing else.
func checkOnce(t *testing.T, c owner, roomID, bot string, ids []string) {
	t.Helper()
	replies, reactions := answers(t, c, roomID, bot)
	want := map[string]bool{}
	for i, id := range ids {
		want[id] = true
		if replies[id] != 1 || reactions[id] != 1 {
			t.Errorf("message %d (%s): %d replies and %d reactions, want 1 and 1", i, id, replies[id], reactions[id])
		}
	}
	for id, n := range replies {
		if !want[id] {
			t.Errorf("%d replies to %s, which is none of the messages", n, id)
		}
	}
}

// replyWatch follows a room and counts the bot's reactions per message:
// the last part of its answers.
type replyWatch struct {
	bot string
	mu  sync.Mutex
	got map[string]int
	ch  chan struct{} // a reaction arrived
}

func watchReplies(t *testing.T, c owner, roomID, bot string) *replyWatch {
	t.Helper()
	w := &replyWatch{bot: bot, got: map[string]int{}, ch: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, roomID, func(m client.Message) {
		if m.Sender != bot || m.Type != e2e.TypeReact {
			return
		}
		w.mu.Lock()
		w.got[m.ReplyTo]++
		w.mu.Unlock()
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

// answered is the number of messages of ids answered (with a reaction).
func (w *replyWatch) answered(ids []string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, id := range ids {
		if w.got[id] > 0 {
			n++
		}
	}
	return n
}

// waitAnswered waits until at least n of ids are answered.
func (w *replyWatch) waitAnswered(t *testing.T, ids func() []string, n int, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for w.answered(ids()) < n {
		select {
		case <-w.ch:
		case <-deadline:
			t.Fatalf("%d of the messages answered within %s, want %d", w.answered(ids()), d, n)
		}
	}
}

// buildWorker builds this command into dir.
func buildWorker(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "worker")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is the worker running as a process of its own.
type proc struct {
	cmd    *exec.Cmd
	stderr *testio.Buffer
	done   chan struct{}
}

// startProc starts the worker binary; Cleanup kills it.
func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stderr: &testio.Buffer{}, done: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	p.cmd.Env = append(os.Environ(), "UNIBUS_IDENTITY=", "UNIBUS_SERVER=", "UNIBUS_CA=", "UNIBUS_INSECURE=")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill(t) })
	return p
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Errorf("kill worker: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Error("the worker did not die within 30s of SIGKILL")
	}
}

// TestWorkerExactlyOnceAcrossKill: the worker binary, killed with SIGKILL
// while messages stream in and restarted, twice, answers every message
// exactly once; its cursor file says where it is.
func TestWorkerExactlyOnceAcrossKill(t *testing.T) {
	n := nodetest.Run(t)
	dir := t.TempDir()
	bin := buildWorker(t, dir)
	alice := newOwner(t, n, "alice")
	botID, seed := newBot(t, n, dir)
	bot := botID.PublicKey()
	args := []string{"--identity", seed, "--server", n.ClientURL()}
	p := startProc(t, bin, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", p.stderr.String())
		}
	})
	p.stderr.WaitFor(t, `msg="worker started"`, 30*time.Second)

	ctx := context.Background()
	room, err := alice.CreateRoom(ctx, "stream", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bot); err != nil {
		t.Fatal(err)
	}
	p.stderr.WaitFor(t, `msg="joined room" room=`+room.RoomID, 30*time.Second)
	watch := watchReplies(t, alice, room.RoomID, bot)

	// alice sends messages in batches: the worker is killed while it
	// works through the first, the second is sent while it is dead, and
	// it is killed again while it works through both.
	const batch, total = 30, 90
	var ids []string
	send := func() {
		t.Helper()
		for range batch {
			sent, err := alice.Publish(ctx, room.RoomID, fmt.Appendf(nil, "job %02d", len(ids)))
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			ids = append(ids, sent.ID)
		}
	}
	sentIDs := func() []string { return ids }
	restart := func() {
		t.Helper()
		old := p.stderr.String()
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("worker log before a kill:\n%s", old)
			}
		})
		p = startProc(t, bin, args...)
	}
	send()
	watch.waitAnswered(t, sentIDs, 10, 60*time.Second)
	p.kill(t)
	t.Logf("killed after %d answers of %d", watch.answered(ids), len(ids))
	send()
	restart()
	watch.waitAnswered(t, sentIDs, 40, 60*time.Second)
	p.kill(t)
	t.Logf("killed after %d answers of %d", watch.answered(ids), len(ids))
	restart()
	send()
	watch.waitAnswered(t, sentIDs, total, 60*time.Second)
	// The bot answers in order: once it answered a last message, it has
	// been through everything before it.
	last, err := alice.Publish(ctx, room.RoomID, []byte("last"))
	if err != nil {
		t.Fatal(err)
	}
	all := append(ids, last.ID)
	watch.waitAnswered(t, func() []string { return all }, total+1, 60*time.Second)
	checkOnce(t, alice, room.RoomID, bot, all)

	// The cursor is where it should be, written whole.
	b, err := os.ReadFile(seed + CursorSuffix)
	if err != nil {
		t.Fatal(err)
	}
	var cur cursor
	if err := json.Unmarshal(b, &cur); err != nil || cur.Rooms[room.RoomID] < last.Seq || cur.Events == 0 {
		t.Fatalf("cursor file %s: %+v, %v; want room %s at seq %d or later and an events position", b, cur, err, room.RoomID, last.Seq)
	}
	if got := fileMode(t, seed+CursorSuffix); got != 0o600 {
		t.Fatalf("cursor file mode %04o, want 0600", got)
	}
}

// TestWorkerCompletesHalfAnswers: a restart whose cursor is behind (lost,
// or a crash before it was written) answers nothing twice: it finds its
// answers in the room's log, completes one that has its reply but not
// its reaction, and answers what is new.
func TestWorkerCompletesHalfAnswers(t *testing.T) {
	n := nodetest.Run(t)
	dir := t.TempDir()
	alice := newOwner(t, n, "alice")
	botID, seed := newBot(t, n, dir)
	bot := botID.PublicKey()
	var logs testio.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	w := &worker{IdentityFile: seed, Server: n.ClientURL(), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	stop := runWorker(t, w)
	logs.WaitFor(t, `msg="worker started"`, 30*time.Second)
	ctx := context.Background()
	room, err := alice.CreateRoom(ctx, "jobs", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bot); err != nil {
		t.Fatal(err)
	}
	logs.WaitFor(t, `msg="joined room" room=`+room.RoomID, 30*time.Second)
	watch := watchReplies(t, alice, room.RoomID, bot)
	first, err := alice.Publish(ctx, room.RoomID, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	watch.waitAnswered(t, func() []string { return []string{first.ID} }, 1, 30*time.Second)
	logs.WaitFor(t, `msg=answered room=`+room.RoomID+` msg=`+first.ID, 30*time.Second)
	stop()

	// While the bot is down: its cursor goes, and a message is half
	// answered, as if the bot had crashed between its reply and its
	// reaction.
	if err := os.Remove(seed + CursorSuffix); err != nil {
		t.Fatal(err)
	}
	half, err := alice.Publish(ctx, room.RoomID, []byte("half"))
	if err != nil {
		t.Fatal(err)
	}
	asBot, err := client.Connect(ctx, n.ClientURL(), botID)
	if err != nil {
		t.Fatal(err)
	}
	if err := asBot.SetEncryptionKey(ctx, client.EncryptionKeyPath(seed)); err != nil {
		t.Fatal(err)
	}
	if _, err := asBot.PublishReply(ctx, room.RoomID, half.ID, []byte("echo: half")); err != nil {
		t.Fatal(err)
	}
	if err := asBot.Close(); err != nil {
		t.Fatal(err)
	}
	fresh, err := alice.Publish(ctx, room.RoomID, []byte("fresh"))
	if err != nil {
		t.Fatal(err)
	}

	logs.Reset()
	runWorker(t, w)
	watch.waitAnswered(t, func() []string { return []string{fresh.ID} }, 1, 30*time.Second)
	logs.WaitFor(t, `msg=answered room=`+room.RoomID+` msg=`+fresh.ID, 30*time.Second)
	checkOnce(t, alice, room.RoomID, bot, []string{first.ID, half.ID, fresh.ID})
	if strings.Contains(logs.String(), `msg=`+first.ID) {
		t.Errorf("the first message was answered again:\n%s", logs.String())
	}
}

// TestWorkerFollowsEvents: the bot joins a room within a second of being
// invited (the invitation reaches it as an event: nothing polls), accepts
// at start the invitations made while it was down, and stops answering in
// a room it is removed from while it goes on in the others.
func TestWorkerFollowsEvents(t *testing.T) {
	n := nodetest.Run(t)
	dir := t.TempDir()
	alice := newOwner(t, n, "alice")
	botID, seed := newBot(t, n, dir)
	bot := botID.PublicKey()
	ctx := context.Background()

	// An invitation made before the bot ever ran: accepted at start.
	early, err := alice.CreateRoom(ctx, "early", subjects.ModeCleartext)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, early.RoomID, bot); err != nil {
		t.Fatal(err)
	}
	before, err := alice.Publish(ctx, early.RoomID, []byte("sent before the bot joined"))
	if err != nil {
		t.Fatal(err)
	}

	var logs testio.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	w := &worker{IdentityFile: seed, Server: n.ClientURL(), Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	runWorker(t, w)
	logs.WaitFor(t, `msg="accepted invitation" room=`+early.RoomID, 30*time.Second)
	logs.WaitFor(t, `msg="joined room" room=`+early.RoomID, 30*time.Second)
	// From the first message it may see: the one sent before it joined
	// is answered too.
	logs.WaitFor(t, `msg=answered room=`+early.RoomID+` msg=`+before.ID, 30*time.Second)

	// Invited while running: a member within a second. The bot needs its
	// encryption key registered first (it is, once it has started).
	ops, err := alice.CreateRoom(ctx, "ops", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	invited := time.Now()
	if _, err := alice.Invite(ctx, ops.RoomID, bot); err != nil {
		t.Fatal(err)
	}
	logs.WaitFor(t, `msg="joined room" room=`+ops.RoomID, 10*time.Second)
	if took := time.Since(invited); took > time.Second {
		t.Errorf("the bot joined %s after the invitation, want within a second", took)
	}
	watch := watchReplies(t, alice, ops.RoomID, bot)
	hello, err := alice.Publish(ctx, ops.RoomID, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	watch.waitAnswered(t, func() []string { return []string{hello.ID} }, 1, 30*time.Second)

	// Removed from ops: the bot leaves it; in early it goes on.
	if _, err := alice.Remove(ctx, ops.RoomID, bot); err != nil {
		t.Fatal(err)
	}
	logs.WaitFor(t, `msg="left room" room=`+ops.RoomID, 10*time.Second)
	after, err := alice.Publish(ctx, ops.RoomID, []byte("after the removal"))
	if err != nil {
		t.Fatal(err)
	}
	still, err := alice.Publish(ctx, early.RoomID, []byte("still there?"))
	if err != nil {
		t.Fatal(err)
	}
	logs.WaitFor(t, `msg=answered room=`+early.RoomID+` msg=`+still.ID, 30*time.Second)
	if strings.Contains(logs.String(), after.ID) {
		t.Fatalf("the bot handled a message of a room it was removed from:\n%s", logs.String())
	}
	if replies, _ := answers(t, alice, ops.RoomID, bot); replies[after.ID] != 0 || replies[hello.ID] != 1 {
		t.Fatalf("replies in ops: %v", replies)
	}
	// The removal's event is recorded: a restart does not handle it again.
	b, err := os.ReadFile(seed + CursorSuffix)
	if err != nil {
		t.Fatal(err)
	}
	var cur cursor
	if err := json.Unmarshal(b, &cur); err != nil || cur.Events == 0 {
		t.Fatalf("cursor %s: %v, want an events position", b, err)
	}
	if _, ok := cur.Rooms[ops.RoomID]; ok {
		t.Fatalf("cursor %s still has the room the bot left", b)
	}
}

// The cursor file: round trip, written whole (no temporary file left),
// private; a damaged one is an error, a missing one an empty cursor.
func TestCursorFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bot.nk"+CursorSuffix)
	c, err := loadCursor(path)
	if err != nil || len(c.Rooms) != 0 || c.Events != 0 {
		t.Fatalf("missing cursor: %+v, %v", c, err)
	}
	c.Rooms["room-a"], c.Events = 42, 7
	if err := c.save(path); err != nil {
		t.Fatal(err)
	}
	c.Rooms["room-b"] = 9
	if err := c.save(path); err != nil {
		t.Fatal(err)
	}
	got, err := loadCursor(path)
	if err != nil || got.Rooms["room-a"] != 42 || got.Rooms["room-b"] != 9 || got.Events != 7 {
		t.Fatalf("loaded %+v, %v", got, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("directory holds %v (%v), want the cursor file alone", entries, err)
	}
	if m := fileMode(t, path); m != 0o600 {
		t.Fatalf("mode %04o, want 0600", m)
	}
	if err := os.WriteFile(path, []byte(`{"rooms": {"room-a": 4`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadCursor(path); err == nil {
		t.Fatal("a torn cursor file loaded without error")
	}
	// A directory that cannot be written: the error says so.
	if err := c.save(filepath.Join(dir, "missing", "x.cursor")); err == nil || !strings.Contains(err.Error(), "save cursor") {
		t.Fatalf("save into a missing directory: %v", err)
	}
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}
