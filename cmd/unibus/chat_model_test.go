package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

// In-process tests of the chat's model: bubbletea messages in, state,
// view and actions out.

const (
	chatSelf  = "UALICEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	chatBob   = "UBOBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
	chatCarol = "UCAROLCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
)

// chatOpened is when the harness's chat opened; chatMsg's messages are
// sent a day later.
var chatOpened = time.Date(2026, 1, 1, 9, 0, 0, 0, time.Local)

// actionMsg is what the test's do function makes its commands return.
type actionMsg struct{ a chatAction }

// chatHarness is a model whose actions are recorded, not performed.
type chatHarness struct {
	t       *testing.T
	m       *chatModel
	actions []chatAction
	seq     int
}

func newChatHarness(t *testing.T) *chatHarness {
	t.Helper()
	h := &chatHarness{t: t}
	rooms := []chatRoomInfo{
		{ID: "room-ops", Name: "ops", Mode: subjects.ModeE2E},
		{ID: "room-dev", Name: "dev", Mode: subjects.ModeE2E},
	}
	h.m = newChatModel(chatSelf, rooms, 0, func(a chatAction) tea.Cmd {
		return func() tea.Msg { return actionMsg{a} }
	})
	// The test's messages (chatMsg) are sent after the chat opened.
	h.m.opened = chatOpened
	h.send(tea.WindowSizeMsg{Width: 100, Height: 30})
	h.run(h.m.Init())
	return h
}

// send updates the model with msg and runs the command it returns.
func (h *chatHarness) send(msg tea.Msg) {
	h.t.Helper()
	_, cmd := h.m.Update(msg)
	h.run(cmd)
}

// run runs cmd (and the commands of a batch), recording actions; it
// returns true when cmd quits the program.
func (h *chatHarness) run(cmd tea.Cmd) (quit bool) {
	if cmd == nil {
		return false
	}
	switch msg := cmd().(type) {
	case actionMsg:
		h.actions = append(h.actions, msg.a)
	case tea.BatchMsg:
		for _, c := range msg {
			quit = h.run(c) || quit
		}
	case tea.QuitMsg:
		return true
	}
	return quit
}

// typeLine types s and presses Enter; it reports whether that quit.
func (h *chatHarness) typeLine(s string) bool {
	h.t.Helper()
	for _, r := range s {
		h.send(tea.KeyPressMsg{Code: r, Text: string(r)})
	}
	_, cmd := h.m.Update(tea.KeyPressMsg{Code: tea.KeyEnter})
	return h.run(cmd)
}

// takeActions returns the recorded actions and forgets them.
func (h *chatHarness) takeActions() []chatAction {
	a := h.actions
	h.actions = nil
	return a
}

// screen is the view without styling.
func (h *chatHarness) screen() string {
	return ansi.Strip(h.m.View().Content)
}

// lineWith returns the screen line containing sub and its index.
func (h *chatHarness) lineWith(sub string) (string, int) {
	h.t.Helper()
	lines := strings.Split(h.screen(), "\n")
	for i, l := range lines {
		if strings.Contains(l, sub) {
			return l, i
		}
	}
	h.t.Fatalf("no line contains %q; screen:\n%s", sub, h.screen())
	return "", -1
}

// chatMsg makes a message of room; its ID is unique within the test.
func (h *chatHarness) chatMsg(room, sender, text string, replyTo string) client.Message {
	h.seq++
	return client.Message{
		ID: fmt.Sprintf("msg-%03d-%s", h.seq, strings.Repeat("x", 40)), Room: room, Sender: sender,
		Type: e2e.TypeMsg, Thread: replyTo, ReplyTo: replyTo,
		Time: time.Date(2026, 1, 2, 15, 4, 5, 0, time.Local), Data: []byte(text),
	}
}

func (h *chatHarness) chatReact(room, sender, target, emoji string) client.Message {
	m := h.chatMsg(room, sender, emoji, target)
	m.Type, m.Thread = e2e.TypeReact, ""
	return m
}

func TestChatModelIncomingMessage(t *testing.T) {
	h := newChatHarness(t)
	if a := h.takeActions(); len(a) != 1 || a[0] != (chatAction{Kind: actName, Text: chatSelf}) {
		t.Fatalf("Init actions %+v, want the own name lookup", a)
	}
	h.send(chatNameMsg{pub: chatSelf, name: "alice"})
	if l, _ := h.lineWith("unibus chat"); !strings.Contains(l, "#ops") || !strings.Contains(l, "alice (you)") {
		t.Fatalf("header %q: want the room and the own name", l)
	}

	h.send(chatIncomingMsg{h.chatMsg("room-ops", chatBob, "hello \x1b[31malice", "")})
	// Before the name is known: the start of the key; the name is asked once.
	l, _ := h.lineWith("hello")
	if !strings.Contains(l, "[1]") || !strings.Contains(l, short(chatBob)+":") {
		t.Fatalf("message line %q: want [1] and the sender's short key", l)
	}
	if strings.Contains(h.m.View().Content, "\x1b[31malice") || !strings.Contains(l, "hello \uFFFD[31malice") {
		t.Fatalf("escape sequence from the bus not neutralized: %q", l)
	}
	h.send(chatIncomingMsg{h.chatMsg("room-ops", chatBob, "second", "")})
	if a := h.takeActions(); len(a) != 1 || a[0] != (chatAction{Kind: actName, Text: chatBob}) {
		t.Fatalf("actions %+v, want one name lookup for bob", a)
	}
	h.send(chatNameMsg{pub: chatBob, name: "bob"})
	if l, _ := h.lineWith("second"); !strings.Contains(l, "[2]") || !strings.Contains(l, "bob:") {
		t.Fatalf("message line %q: want [2] and bob's name", l)
	}

	// A failed lookup is asked again with the next message.
	h.send(chatIncomingMsg{h.chatMsg("room-ops", chatCarol, "from carol", "")})
	h.send(chatNameMsg{pub: chatCarol, err: client.ErrUnavailable})
	h.takeActions()
	h.send(chatIncomingMsg{h.chatMsg("room-ops", chatCarol, "again", "")})
	if a := h.takeActions(); len(a) != 1 || a[0].Kind != actName || a[0].Text != chatCarol {
		t.Fatalf("actions %+v, want carol's name asked again", a)
	}

	// The same message twice (a redelivery) is shown once.
	m := h.chatMsg("room-ops", chatBob, "once", "")
	h.send(chatIncomingMsg{m})
	h.send(chatIncomingMsg{m})
	if n := strings.Count(h.screen(), "once"); n != 1 {
		t.Fatalf("a duplicate shown %d times", n)
	}
}

func TestChatModelThreadsAndReactions(t *testing.T) {
	h := newChatHarness(t)
	h.send(chatNameMsg{pub: chatBob, name: "bob"})
	root := h.chatMsg("room-ops", chatBob, "deploy?", "")
	other := h.chatMsg("room-ops", chatCarol, "unrelated", "")
	h.send(chatIncomingMsg{root})
	h.send(chatIncomingMsg{other})
	reply := h.chatMsg("room-ops", chatSelf, "on it", root.ID)
	h.send(chatIncomingMsg{reply})
	nested := h.chatMsg("room-ops", chatBob, "thanks", reply.ID)
	h.send(chatIncomingMsg{nested})
	orphan := h.chatMsg("room-ops", chatBob, "answer to the past", "UNSEEN-MESSAGE-ID-0123456789")
	h.send(chatIncomingMsg{orphan})

	// Replies sit under the message they answer, indented, numbered in
	// arrival order.
	rootLine, ri := h.lineWith("deploy?")
	replyLine, pi := h.lineWith("on it")
	nestedLine, ni := h.lineWith("thanks")
	_, oi := h.lineWith("unrelated")
	if pi != ri+1 || ni != pi+1 || oi != ni+1 {
		t.Fatalf("thread order: root %d, reply %d, nested %d, other %d; screen:\n%s", ri, pi, ni, oi, h.screen())
	}
	if !strings.HasPrefix(rootLine, "[1]") || !strings.HasPrefix(replyLine, "  ↳ [3]") || !strings.HasPrefix(nestedLine, "    ↳ [4]") {
		t.Fatalf("thread lines:\n%s\n%s\n%s", rootLine, replyLine, nestedLine)
	}
	if !strings.Contains(replyLine, "(you)") {
		t.Fatalf("own reply %q not marked (you)", replyLine)
	}
	// A reply to a message the chat never saw refers to it by ID.
	if l, _ := h.lineWith("answer to the past"); !strings.HasPrefix(l, "[5]") || !strings.Contains(l, "↳ UNSEEN-MES…") {
		t.Fatalf("orphan reply %q", l)
	}

	// Reactions: counted per emoji and member, a member counted once.
	h.send(chatIncomingMsg{h.chatReact("room-ops", chatBob, root.ID, "👍")})
	h.send(chatIncomingMsg{h.chatReact("room-ops", chatCarol, root.ID, "👍")})
	h.send(chatIncomingMsg{h.chatReact("room-ops", chatCarol, root.ID, "👍")})
	h.send(chatIncomingMsg{h.chatReact("room-ops", chatSelf, root.ID, "🎉")})
	if l, _ := h.lineWith("deploy?"); !strings.HasSuffix(strings.TrimRight(l, " "), "deploy?  👍 2  🎉 1") {
		t.Fatalf("reactions on %q, want 👍 2 then 🎉 1", l)
	}
	if l, _ := h.lineWith("unrelated"); strings.Contains(l, "👍") {
		t.Fatalf("reaction on the wrong message: %q", l)
	}
	// Reactions are not messages: no number.
	if strings.Contains(h.screen(), "[6]") {
		t.Fatalf("a reaction got a number:\n%s", h.screen())
	}
}

func TestChatModelRoomSwitching(t *testing.T) {
	h := newChatHarness(t)
	h.send(chatIncomingMsg{h.chatMsg("room-ops", chatBob, "in ops", "")})
	if l, _ := h.lineWith("rooms:"); !strings.Contains(l, "#ops") || !strings.Contains(l, "#dev") {
		t.Fatalf("room list %q", l)
	}

	// A message in another room counts as unread there.
	h.send(chatIncomingMsg{h.chatMsg("room-dev", chatBob, "in dev", "")})
	h.send(chatIncomingMsg{h.chatMsg("room-dev", chatBob, "in dev too", "")})
	if l, _ := h.lineWith("rooms:"); !strings.Contains(l, "#dev (2)") {
		t.Fatalf("room list %q, want dev with 2 unread", l)
	}
	if strings.Contains(h.screen(), "in dev") {
		t.Fatal("a message of dev shown in ops")
	}

	// Tab opens the next room; its unread count is cleared.
	h.send(tea.KeyPressMsg{Code: tea.KeyTab})
	if l, _ := h.lineWith("unibus chat"); !strings.Contains(l, "#dev") {
		t.Fatalf("after Tab the header is %q", l)
	}
	if l, _ := h.lineWith("in dev too"); !strings.HasPrefix(l, "[2]") {
		t.Fatalf("dev's line %q", l)
	}
	if strings.Contains(h.screen(), "in ops") || strings.Contains(h.screen(), "(2)") {
		t.Fatalf("after Tab:\n%s", h.screen())
	}
	// It wraps around, both ways, with Ctrl+N / Ctrl+P and Shift+Tab.
	for _, k := range []tea.KeyPressMsg{{Code: 'n', Mod: tea.ModCtrl}, {Code: 'p', Mod: tea.ModCtrl}, {Code: tea.KeyTab, Mod: tea.ModShift}} {
		before := h.m.cur
		h.send(k)
		if h.m.cur == before {
			t.Fatalf("%s did not switch rooms", k)
		}
	}
	if h.m.cur != 0 {
		t.Fatalf("after Tab, Ctrl+N, Ctrl+P, Shift+Tab: room %d, want ops (0)", h.m.cur)
	}

	// /join a known room by name switches without asking the bus.
	h.takeActions()
	h.typeLine("/join dev")
	if a := h.takeActions(); h.m.cur != 1 || len(a) != 0 {
		t.Fatalf("/join dev: room %d, actions %+v", h.m.cur, a)
	}
	// An unknown room is looked up; when found it is added and opened.
	h.typeLine("/join alerts")
	if a := h.takeActions(); len(a) != 1 || a[0] != (chatAction{Kind: actJoin, Text: "alerts"}) {
		t.Fatalf("/join alerts: actions %+v", a)
	}
	h.send(chatJoinedMsg{arg: "alerts", room: chatRoomInfo{ID: "room-alerts", Name: "alerts", Mode: subjects.ModeCleartext}})
	if l, _ := h.lineWith("unibus chat"); !strings.Contains(l, "#alerts") || !strings.Contains(l, "cleartext") {
		t.Fatalf("after joining: header %q", l)
	}
	if l, _ := h.lineWith("rooms:"); !strings.Contains(l, "#alerts") {
		t.Fatalf("room list %q lacks the joined room", l)
	}
	// A room's first message may arrive before the room is opened.
	h.typeLine("/join late")
	early := h.chatMsg("room-late", chatBob, "early bird", "")
	h.send(chatIncomingMsg{early})
	h.send(chatJoinedMsg{arg: "late", room: chatRoomInfo{ID: "room-late", Name: "late", Mode: subjects.ModeE2E}})
	if l, _ := h.lineWith("early bird"); !strings.HasPrefix(l, "[1]") || h.m.cur != 3 || len(h.m.rooms) != 4 {
		t.Fatalf("room joined after its first message: line %q, room %d of %d", l, h.m.cur, len(h.m.rooms))
	}
	if l, _ := h.lineWith("unibus chat"); !strings.Contains(l, "#late") {
		t.Fatalf("header %q, want the joined room's name", l)
	}
	h.send(tea.KeyPressMsg{Code: tea.KeyTab, Mod: tea.ModShift})

	// A room that cannot be opened says why, and the chat stays put.
	h.typeLine("/join nowhere")
	h.send(chatJoinedMsg{arg: "nowhere", err: fmt.Errorf("room %q: %w", "nowhere", client.ErrNotFound)})
	if l, _ := h.lineWith("open nowhere"); !strings.Contains(l, "not found") || h.m.cur != 2 {
		t.Fatalf("failed join: status %q, room %d", l, h.m.cur)
	}
}

func TestChatModelSubmit(t *testing.T) {
	h := newChatHarness(t)
	h.takeActions()
	root := h.chatMsg("room-ops", chatBob, "deploy?", "")
	h.send(chatIncomingMsg{root})
	h.takeActions()

	// Enter sends the line to the current room and clears it.
	if h.typeLine("hello team") {
		t.Fatal("sending quit")
	}
	if a := h.takeActions(); len(a) != 1 || a[0] != (chatAction{Kind: actSend, Room: "room-ops", Text: "hello team"}) {
		t.Fatalf("actions %+v, want a send to ops", a)
	}
	if v := h.m.input.Value(); v != "" {
		t.Fatalf("input %q after sending", v)
	}
	h.typeLine("//etc/hosts is a path")
	if a := h.takeActions(); len(a) != 1 || a[0].Text != "/etc/hosts is a path" {
		t.Fatalf("//: actions %+v", a)
	}
	h.typeLine("   ")
	if a := h.takeActions(); len(a) != 0 {
		t.Fatalf("blank line sent: %+v", a)
	}

	// /reply and /react name the message by its number.
	h.typeLine("/reply 1 on it")
	h.typeLine("/react 1 👍")
	want := []chatAction{
		{Kind: actReply, Room: "room-ops", Target: root.ID, Text: "on it"},
		{Kind: actReact, Room: "room-ops", Target: root.ID, Text: "👍"},
	}
	if a := h.takeActions(); len(a) != 2 || a[0] != want[0] || a[1] != want[1] {
		t.Fatalf("actions %+v, want %+v", a, want)
	}

	// Mistakes are explained and the line is kept to be fixed.
	for _, line := range []string{"/reply 7 hi", "/react 1", "/reply x hi", "/frobnicate"} {
		h.typeLine(line)
		if a := h.takeActions(); len(a) != 0 {
			t.Fatalf("%q made actions %+v", line, a)
		}
		if !h.m.statusErr || h.m.input.Value() != line {
			t.Fatalf("%q: status %q (error %v), input %q", line, h.m.status, h.m.statusErr, h.m.input.Value())
		}
		h.m.input.Reset()
	}
	if l, _ := h.lineWith("unknown command"); !strings.Contains(l, "/frobnicate") {
		t.Fatalf("status %q", l)
	}

	// A failed send is shown; the next success clears it.
	h.send(chatDoneMsg{action: want[0], err: fmt.Errorf("send: %w", client.ErrForbidden)})
	if l, _ := h.lineWith("send:"); !strings.Contains(l, "forbidden") {
		t.Fatalf("status %q", l)
	}
	h.send(chatDoneMsg{action: want[0]})
	if h.m.statusErr {
		t.Fatalf("status still an error: %q", h.m.status)
	}

	// /quit and Ctrl+C quit.
	if !h.typeLine("/quit") {
		t.Fatal("/quit did not quit")
	}
	_, cmd := h.m.Update(tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl})
	if !h.run(cmd) {
		t.Fatal("Ctrl+C did not quit")
	}
}

// The pane follows new messages, and the view fits the window.
func TestChatModelLayout(t *testing.T) {
	h := newChatHarness(t)
	h.send(tea.WindowSizeMsg{Width: 60, Height: 10})
	for i := range 30 {
		h.send(chatIncomingMsg{h.chatMsg("room-ops", chatBob, fmt.Sprintf("line %02d", i), "")})
	}
	lines := strings.Split(h.screen(), "\n")
	if len(lines) != 10 {
		t.Fatalf("%d lines in a 10-line window:\n%s", len(lines), h.screen())
	}
	if !strings.Contains(h.screen(), "line 29") || strings.Contains(h.screen(), "line 00") {
		t.Fatalf("pane does not follow the last message:\n%s", h.screen())
	}
	if !strings.HasPrefix(lines[len(lines)-1], "> ") {
		t.Fatalf("last line %q, want the input", lines[len(lines)-1])
	}
	v := h.m.View()
	if v.Cursor == nil || v.Cursor.Position.Y != 9 {
		t.Fatalf("cursor %+v, want on the input line", v.Cursor)
	}
	// Scrolled up, it stays put when a message arrives.
	h.send(tea.KeyPressMsg{Code: tea.KeyPgUp})
	h.send(chatIncomingMsg{h.chatMsg("room-ops", chatBob, "line 30", "")})
	if strings.Contains(h.screen(), "line 30") {
		t.Fatalf("scrolled-up pane jumped to the new message:\n%s", h.screen())
	}
	h.send(tea.KeyPressMsg{Code: tea.KeyPgDown})
	h.send(tea.KeyPressMsg{Code: tea.KeyPgDown})
	if !strings.Contains(h.screen(), "line 30") {
		t.Fatalf("PgDn did not reach the last message:\n%s", h.screen())
	}
}

// storedMsg is a message of room with room-log sequence seq.
func (h *chatHarness) storedMsg(room string, seq uint64, text string) client.Message {
	m := h.chatMsg(room, chatBob, text, "")
	m.Seq = seq
	return m
}

// pageOf is a history page of msgs in the order given.
func pageOf(firstSeq uint64, msgs ...client.Message) client.HistoryPage {
	return client.HistoryPage{Messages: msgs, FirstSeq: firstSeq, LastSeq: 1000}
}

// topLine is the first line of the message pane.
func (h *chatHarness) topLine() string {
	return strings.Split(h.screen(), "\n")[2]
}

// PgUp at the top of a room loads the page before its oldest message,
// adds it above without moving what is shown, and shows it with the next
// PgUp (or at once when the PgUp that asked could not move); it stops at
// the first message the caller may see.
func TestChatModelScrollback(t *testing.T) {
	h := newChatHarness(t)
	h.send(tea.WindowSizeMsg{Width: 60, Height: 10}) // a pane of 6 lines
	h.takeActions()
	// The room opens with its last messages, seqs 101 to 120.
	for i := range 20 {
		h.send(chatIncomingMsg{h.storedMsg("room-ops", uint64(101+i), fmt.Sprintf("new %02d", i))})
	}
	h.takeActions()
	if !strings.Contains(h.screen(), "new 19") {
		t.Fatalf("the pane does not show the last message:\n%s", h.screen())
	}

	// PgUp scrolls; reaching the top asks for the page before seq 101,
	// once, at least 10 messages.
	var asked []chatAction
	for range 5 {
		h.send(tea.KeyPressMsg{Code: tea.KeyPgUp})
		asked = append(asked, h.takeActions()...)
	}
	want := chatAction{Kind: actHistory, Room: "room-ops", Before: 101, Last: historyPageMin}
	if len(asked) != 1 || asked[0] != want {
		t.Fatalf("actions %+v, want one %+v", asked, want)
	}
	if !h.m.pane.AtTop() || !strings.Contains(h.topLine(), "[1]") || !strings.Contains(h.topLine(), "new 00") {
		t.Fatalf("top of the room: first pane line %q:\n%s", h.topLine(), h.screen())
	}
	if !strings.Contains(h.screen(), "loading older messages") {
		t.Fatalf("no sign of loading:\n%s", h.screen())
	}

	// The page comes (10 older messages, and a reaction to one of them):
	// added above, renumbered, and the pane still shows what it showed.
	// The PgUps pressed at the top while it loaded make it scroll up.
	var older []client.Message
	for i := range 10 {
		older = append(older, h.storedMsg("room-ops", uint64(90+i), fmt.Sprintf("old %02d", i)))
	}
	react := h.chatReact("room-ops", chatCarol, older[9].ID, "🎉")
	react.Seq = 100
	h.send(chatHistoryMsg{room: "room-ops", before: 101, page: pageOf(1, append(older, react)...)})
	if e := h.m.rooms[0].entries[10]; e.n != 11 || string(e.m.Data) != "new 00" {
		t.Fatalf("after loading, entry 11 is [%d] %q, want [11] new 00", e.n, e.m.Data)
	}
	if l, _ := h.lineWith("old 09"); !strings.HasPrefix(l, "[10]") || !strings.Contains(l, "🎉 1") {
		t.Fatalf("old 09 is %q, want [10] with its reaction", l)
	}
	if strings.Contains(h.screen(), "new 00") {
		t.Fatalf("the pane did not scroll up to the page the PgUp asked for:\n%s", h.screen())
	}
	// /reply names messages by their new numbers.
	h.typeLine("/reply 1 found it")
	if a := h.takeActions(); len(a) != 1 || a[0].Target != older[0].ID {
		t.Fatalf("/reply 1 after loading: %+v, want a reply to %s", a, older[0].ID)
	}

	// Loading without a pending PgUp keeps the view in place: go to the
	// top (which asks for the next page), then the page comes.
	for range 3 {
		h.send(tea.KeyPressMsg{Code: tea.KeyPgUp})
	}
	asked = h.takeActions()
	if len(asked) != 1 || asked[0].Before != 90 {
		t.Fatalf("actions %+v, want the page before 90", asked)
	}
	h.m.rooms[0].scrollOnLoad = false // as if the top was reached by the last PgUp
	if !strings.Contains(h.topLine(), "old 00") {
		t.Fatalf("top line %q, want old 00", h.topLine())
	}
	h.send(chatHistoryMsg{room: "room-ops", before: 90, page: pageOf(1,
		h.storedMsg("room-ops", 88, "older 88"), h.storedMsg("room-ops", 89, "older 89"))})
	if !strings.Contains(h.topLine(), "[3]") || !strings.Contains(h.topLine(), "old 00") {
		t.Fatalf("the view moved: top line %q, want [3] old 00", h.topLine())
	}
	h.send(tea.KeyPressMsg{Code: tea.KeyPgUp})
	if !strings.Contains(h.screen(), "older 88") {
		t.Fatalf("PgUp does not show the loaded page:\n%s", h.screen())
	}

	// A failed load says why; the next PgUp at the top asks again.
	asked = h.takeActions()
	if len(asked) != 1 || asked[0].Before != 88 {
		t.Fatalf("actions %+v, want the page before 88", asked)
	}
	h.send(chatHistoryMsg{room: "room-ops", before: 88, err: fmt.Errorf("history: %w", client.ErrUnavailable)})
	if l, _ := h.lineWith("load older messages"); !strings.Contains(l, "unavailable") || !h.m.statusErr {
		t.Fatalf("status %q", l)
	}
	h.send(tea.KeyPressMsg{Code: tea.KeyPgUp})
	asked = h.takeActions()
	if len(asked) != 1 || asked[0].Before != 88 {
		t.Fatalf("after a failure: actions %+v, want the page before 88 again", asked)
	}
	// An empty page: the beginning, marked; no more asking.
	h.send(chatHistoryMsg{room: "room-ops", before: 88, page: pageOf(88)})
	if l, _ := h.lineWith("the beginning of #ops"); l != h.topLine() {
		t.Fatalf("the beginning is not marked at the top:\n%s", h.screen())
	}
	for range 3 {
		h.send(tea.KeyPressMsg{Code: tea.KeyPgUp})
	}
	if a := h.takeActions(); len(a) != 0 {
		t.Fatalf("asked again past the beginning: %+v", a)
	}
	if n := len(h.m.rooms[0].entries); n != 32 {
		t.Fatalf("%d messages in the room, want 32", n)
	}

	// A page for a room not shown is kept for when it is opened, and a
	// page that repeats shown messages adds nothing.
	h.send(chatHistoryMsg{room: "room-dev", page: pageOf(1, h.storedMsg("room-dev", 5, "dev old"))})
	h.send(chatHistoryMsg{room: "room-ops", before: 200, page: pageOf(1, h.m.rooms[0].entries[0].m)})
	if n := len(h.m.rooms[0].entries); n != 32 {
		t.Fatalf("a repeated message was added: %d messages", n)
	}
	h.send(tea.KeyPressMsg{Code: tea.KeyTab})
	if _, i := h.lineWith("dev old"); i < 0 {
		t.Fatal("dev's page not shown")
	}
}

// In a room that keeps no history (no sequences), PgUp at the top asks
// for nothing and marks the beginning.
func TestChatModelScrollbackWithoutHistory(t *testing.T) {
	h := newChatHarness(t)
	h.takeActions()
	h.send(chatIncomingMsg{h.chatMsg("room-ops", chatBob, "live only", "")})
	h.takeActions()
	h.send(tea.KeyPressMsg{Code: tea.KeyPgUp})
	if a := h.takeActions(); len(a) != 0 {
		t.Fatalf("actions %+v in a room without history", a)
	}
	if l := h.topLine(); !strings.Contains(l, "the beginning of #ops") {
		t.Fatalf("top line %q", l)
	}
	// An empty room asks for its newest page, which may have come in
	// before the subscription started.
	h.send(tea.KeyPressMsg{Code: tea.KeyTab})
	h.send(tea.KeyPressMsg{Code: tea.KeyPgUp})
	if a := h.takeActions(); len(a) != 1 || a[0].Kind != actHistory || a[0].Room != "room-dev" || a[0].Before != 0 {
		t.Fatalf("actions %+v, want the newest page of dev", a)
	}
}

// The messages a room opens with (sent before the chat opened) are not
// unread; those sent since are.
func TestChatModelUnreadSinceOpened(t *testing.T) {
	h := newChatHarness(t)
	old := h.chatMsg("room-dev", chatBob, "from yesterday", "")
	old.Time = chatOpened.Add(-time.Hour)
	h.send(chatIncomingMsg{old})
	if l, _ := h.lineWith("rooms:"); strings.Contains(l, "(1)") {
		t.Fatalf("room list %q: history counted as unread", l)
	}
	h.send(chatIncomingMsg{h.chatMsg("room-dev", chatBob, "just now", "")})
	if l, _ := h.lineWith("rooms:"); !strings.Contains(l, "#dev (1)") {
		t.Fatalf("room list %q, want dev with 1 unread", l)
	}
}
