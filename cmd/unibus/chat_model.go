package main

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"charm.land/bubbles/v2/textinput"
	"charm.land/bubbles/v2/viewport"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/subjects"
)

// The chat's model is pure: it turns bubbletea messages (keys, window
// sizes, and the chat*Msg types below, which the session sends) into a new
// state and a view. Everything that touches the bus leaves it as a
// chatAction, handed to the do function, whose command the session runs.

// chatHelp is the status line's help.
const chatHelp = "Enter send · /reply N text · /react N emoji · /join ROOM · Tab/Shift+Tab rooms · PgUp/PgDn scroll (PgUp at the top loads older) · /quit"

// maxThreadDepth bounds the indentation of replies to replies.
const maxThreadDepth = 6

// chatRoomInfo is a room the chat can show.
type chatRoomInfo struct {
	ID, Name, Mode string
}

func roomInfoOf(r subjects.RoomInfo) chatRoomInfo {
	return chatRoomInfo{ID: r.RoomID, Name: r.Name, Mode: r.Mode}
}

// label is the room's name, or its ID when it has none.
func (r chatRoomInfo) label() string {
	if r.Name != "" {
		return cleanLine(r.Name)
	}
	return r.ID
}

// actionKind says what a chatAction asks of the bus.
type actionKind int

const (
	actSend    actionKind = iota + 1 // publish Text to Room
	actReply                         // publish Text to Room answering Target
	actReact                         // react to Target in Room with Text
	actJoin                          // find the room Text names, subscribe, open it
	actName                          // look up the display name of user Text
	actHistory                       // read the Last messages of Room before seq Before
)

// chatAction is a request from the UI to the bus.
type chatAction struct {
	Kind   actionKind
	Room   string // room ID
	Target string // message replied or reacted to
	Text   string // message, emoji, room name or ID, or user key
	// Before and Last ask actHistory for the last Last messages with a
	// sequence below Before.
	Before uint64
	Last   int
}

// Messages the session sends to the model.
type (
	// chatIncomingMsg is a verified message of a subscribed room.
	chatIncomingMsg struct{ m client.Message }
	// chatRejectMsg is a frame of a room that did not verify or decrypt.
	chatRejectMsg struct {
		room string
		err  error
	}
	// chatDoneMsg ends an actSend, actReply or actReact.
	chatDoneMsg struct {
		action chatAction
		err    error
	}
	// chatJoinedMsg ends an actJoin: the room is subscribed, or err says
	// why not.
	chatJoinedMsg struct {
		arg  string
		room chatRoomInfo
		err  error
	}
	// chatNameMsg ends an actName; on error the name stays unknown and is
	// asked again with the sender's next message.
	chatNameMsg struct {
		pub, name string
		err       error
	}
	// chatHistoryMsg ends an actHistory: the page of room before seq
	// before, or err.
	chatHistoryMsg struct {
		room   string
		before uint64
		page   client.HistoryPage
		err    error
	}
)

// chatEntry is one message of a room.
type chatEntry struct {
	// n numbers the room's messages from 1 in the room's order, for
	// /reply N and /react N; loading older messages renumbers them.
	n int
	m client.Message
}

// chatRoom is a room's state in the chat.
type chatRoom struct {
	info chatRoomInfo
	// entries are the messages in the room log's order (arrival order in
	// a room that keeps no history).
	entries []*chatEntry
	byID    map[string]*chatEntry
	// reactions: target message ID → emoji → the senders who reacted.
	reactions map[string]map[string]map[string]bool
	unread    int
	// loading: a page of older messages is asked for; scrollOnLoad: show
	// it (scroll up a page) when it comes. exhausted: no older message
	// is there to load.
	loading, scrollOnLoad, exhausted bool
}

// oldestSeq is the room-log sequence of the oldest message shown; 0 when
// none is shown or the room keeps no history.
func (r *chatRoom) oldestSeq() uint64 {
	for _, e := range r.entries {
		if e.m.Seq != 0 {
			return e.m.Seq
		}
	}
	return 0
}

func newChatRoom(info chatRoomInfo) *chatRoom {
	return &chatRoom{info: info, byID: map[string]*chatEntry{}, reactions: map[string]map[string]map[string]bool{}}
}

// chatStyles are the lipgloss styles of the chat's view.
type chatStyles struct {
	header, current, room, unread, number, time, self, reaction, marker, status, errStatus lipgloss.Style
	senders                                                                                []lipgloss.Style
}

func newChatStyles() chatStyles {
	senders := make([]lipgloss.Style, 0, 6)
	for _, c := range []string{"2", "3", "4", "5", "6", "9"} {
		senders = append(senders, lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color(c)))
	}
	return chatStyles{
		header:    lipgloss.NewStyle().Bold(true),
		current:   lipgloss.NewStyle().Bold(true).Reverse(true),
		room:      lipgloss.NewStyle(),
		unread:    lipgloss.NewStyle().Bold(true).Foreground(lipgloss.Color("3")),
		number:    lipgloss.NewStyle().Faint(true),
		time:      lipgloss.NewStyle().Faint(true),
		self:      lipgloss.NewStyle().Bold(true),
		reaction:  lipgloss.NewStyle().Foreground(lipgloss.Color("3")),
		marker:    lipgloss.NewStyle().Faint(true),
		status:    lipgloss.NewStyle().Faint(true),
		errStatus: lipgloss.NewStyle().Foreground(lipgloss.Color("1")),
		senders:   senders,
	}
}

// chatModel is the chat's bubbletea model.
type chatModel struct {
	self  string
	rooms []*chatRoom
	cur   int
	// names: user key → display name; pending: lookups under way.
	names   map[string]string
	pending map[string]bool
	// do turns an action into the command that performs it.
	do func(chatAction) tea.Cmd
	// now is the clock, for tests.
	now func() time.Time
	// opened is when the chat opened: messages of other rooms sent before
	// (the history each room opens with) are not unread.
	opened time.Time

	input         textinput.Model
	pane          viewport.Model
	width, height int
	status        string
	statusErr     bool
	styles        chatStyles
}

var _ tea.Model = (*chatModel)(nil)

// newChatModel returns the model of a chat as self in rooms, showing
// rooms[cur]; do performs its actions.
func newChatModel(self string, rooms []chatRoomInfo, cur int, do func(chatAction) tea.Cmd) *chatModel {
	in := textinput.New()
	in.Prompt = "> "
	in.Placeholder = "message, or /help"
	in.CharLimit = 4000
	in.SetVirtualCursor(false)
	in.Focus()
	m := &chatModel{
		self: self, cur: cur, do: do, now: time.Now,
		names: map[string]string{}, pending: map[string]bool{},
		input: in, pane: viewport.New(), status: chatHelp, styles: newChatStyles(),
	}
	m.pane.SoftWrap = true
	m.pane.FillHeight = true
	m.opened = m.now()
	for _, r := range rooms {
		m.rooms = append(m.rooms, newChatRoom(r))
	}
	m.resize(80, 24)
	return m
}

// Init asks for the caller's own display name.
func (m *chatModel) Init() tea.Cmd {
	return m.lookupName(m.self)
}

// Update applies msg.
func (m *chatModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.resize(msg.Width, msg.Height)
		return m, nil
	case tea.KeyPressMsg:
		return m, m.key(msg)
	case chatIncomingMsg:
		return m, m.receive(msg.m)
	case chatRejectMsg:
		m.setError(fmt.Errorf("dropped a frame in %s: %w", m.roomLabel(msg.room), msg.err))
		return m, nil
	case chatDoneMsg:
		if msg.err != nil {
			m.setError(msg.err)
		} else if m.statusErr {
			m.setStatus(chatHelp)
		}
		return m, nil
	case chatJoinedMsg:
		m.joined(msg)
		return m, nil
	case chatHistoryMsg:
		m.older(msg)
		return m, nil
	case chatNameMsg:
		delete(m.pending, msg.pub)
		if msg.err == nil {
			m.names[msg.pub] = msg.name
			m.refresh()
		}
		return m, nil
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(msg) // pastes, among others
	return m, cmd
}

// key handles a key press: the chat's own keys, else the input line's.
func (m *chatModel) key(k tea.KeyPressMsg) tea.Cmd {
	switch k.String() {
	case "ctrl+c":
		return tea.Quit
	case "enter":
		return m.submit()
	case "tab", "ctrl+n":
		m.switchTo(m.cur + 1)
		return nil
	case "shift+tab", "ctrl+p":
		m.switchTo(m.cur - 1)
		return nil
	case "pgup":
		atTop := m.pane.AtTop()
		m.pane.PageUp()
		return m.loadOlder(atTop)
	case "pgdown":
		m.pane.PageDown()
		return nil
	}
	var cmd tea.Cmd
	m.input, cmd = m.input.Update(k)
	return cmd
}

// submit handles the input line: a command, or a message for the current
// room. The line is kept when it is refused, so that it can be fixed.
func (m *chatModel) submit() tea.Cmd {
	line := strings.TrimSpace(m.input.Value())
	if line == "" {
		return nil
	}
	cmd, err := m.command(line)
	if err != nil {
		m.setError(err)
		return nil
	}
	m.input.Reset()
	return cmd
}

// errChatUsage marks a malformed chat command.
var errChatUsage = errors.New("usage")

func chatUsagef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errChatUsage}, args...)...)
}

// command parses and runs one input line.
func (m *chatModel) command(line string) (tea.Cmd, error) {
	if !strings.HasPrefix(line, "/") || strings.HasPrefix(line, "//") {
		room := m.current()
		if room == nil {
			return nil, chatUsagef("no room open: /join ROOM")
		}
		text := line
		if strings.HasPrefix(line, "//") {
			text = line[1:] // "//text" sends "/text"
		}
		return m.do(chatAction{Kind: actSend, Room: room.info.ID, Text: text}), nil
	}
	name, rest, _ := strings.Cut(line[1:], " ")
	rest = strings.TrimSpace(rest)
	switch name {
	case "quit", "q", "exit":
		return tea.Quit, nil
	case "help", "h", "?":
		m.setStatus(chatHelp)
		return nil, nil
	case "next":
		m.switchTo(m.cur + 1)
		return nil, nil
	case "prev":
		m.switchTo(m.cur - 1)
		return nil, nil
	case "join", "j", "open":
		if rest == "" {
			return nil, chatUsagef("/join ROOM: a room name or ID")
		}
		if i := m.findRoom(rest); i >= 0 {
			m.switchTo(i)
			return nil, nil
		}
		m.setStatus("opening " + cleanLine(rest) + "…")
		return m.do(chatAction{Kind: actJoin, Text: rest}), nil
	case "reply", "r", "react":
		room := m.current()
		if room == nil {
			return nil, chatUsagef("no room open: /join ROOM")
		}
		what := "text"
		if name == "react" {
			what = "emoji"
		}
		num, text, _ := strings.Cut(rest, " ")
		text = strings.TrimSpace(text)
		n, err := strconv.Atoi(num)
		if err != nil || text == "" {
			return nil, chatUsagef("/%s N %s: N is the message's number in [brackets]", name, what)
		}
		if n < 1 || n > len(room.entries) {
			return nil, chatUsagef("no message [%d] in %s", n, room.info.label())
		}
		target := room.entries[n-1].m.ID
		if name == "react" {
			return m.do(chatAction{Kind: actReact, Room: room.info.ID, Target: target, Text: text}), nil
		}
		return m.do(chatAction{Kind: actReply, Room: room.info.ID, Target: target, Text: text}), nil
	}
	return nil, chatUsagef("unknown command /%s (/help lists them; //text sends /text)", cleanLine(name))
}

// receive adds a message to its room.
func (m *chatModel) receive(msg client.Message) tea.Cmd {
	i := m.roomIndex(msg.Room)
	if i < 0 {
		// A room being opened (/join) whose first message won the race
		// with chatJoinedMsg, which names it.
		m.rooms = append(m.rooms, newChatRoom(chatRoomInfo{ID: msg.Room}))
		i = len(m.rooms) - 1
	}
	r := m.rooms[i]
	switch msg.Type {
	case e2e.TypeReact:
		r.react(msg)
	default:
		if _, dup := r.byID[msg.ID]; dup {
			return nil
		}
		e := &chatEntry{n: len(r.entries) + 1, m: msg}
		r.entries = append(r.entries, e)
		r.byID[msg.ID] = e
		if i != m.cur && msg.Time.After(m.opened) {
			r.unread++
		}
	}
	if i == m.cur {
		m.refresh()
	}
	return m.lookupName(msg.Sender)
}

// react counts a reaction.
func (r *chatRoom) react(msg client.Message) {
	if msg.ReplyTo == "" {
		return
	}
	byEmoji := r.reactions[msg.ReplyTo]
	if byEmoji == nil {
		byEmoji = map[string]map[string]bool{}
		r.reactions[msg.ReplyTo] = byEmoji
	}
	emoji := cleanLine(string(msg.Data))
	if byEmoji[emoji] == nil {
		byEmoji[emoji] = map[string]bool{}
	}
	byEmoji[emoji][msg.Sender] = true
}

// historyPageMin is the fewest messages a scrollback page asks for.
const historyPageMin = 10

// loadOlder asks for the page of the current room's messages before the
// oldest shown, when the pane is at the top and there may be one; scroll
// says to show the page (scroll up) when it comes, for a PgUp that could
// not move.
func (m *chatModel) loadOlder(scroll bool) tea.Cmd {
	r := m.current()
	if r == nil || !m.pane.AtTop() || r.exhausted {
		return nil
	}
	if r.loading {
		r.scrollOnLoad = r.scrollOnLoad || scroll
		return nil
	}
	before := r.oldestSeq()
	if len(r.entries) > 0 && before <= 1 {
		// The room keeps no history (no sequence), or the first frame of
		// the log is shown.
		r.exhausted = true
		m.refresh()
		return nil
	}
	r.loading, r.scrollOnLoad = true, scroll
	m.setStatus(fmt.Sprintf("loading older messages of #%s…", r.info.label()))
	last := max(m.pane.Height(), historyPageMin)
	return m.do(chatAction{Kind: actHistory, Room: r.info.ID, Before: before, Last: last})
}

// older adds a page of older messages to its room, keeping the view where
// it is (the message at its top stays there), then scrolls up a page when
// the PgUp that asked for it could not.
func (m *chatModel) older(msg chatHistoryMsg) {
	i := m.roomIndex(msg.room)
	if i < 0 {
		return
	}
	r := m.rooms[i]
	r.loading = false
	scroll := r.scrollOnLoad && i == m.cur
	r.scrollOnLoad = false
	var anchor paneAnchor
	if i == m.cur {
		anchor = m.anchor(r)
	}
	if msg.err != nil {
		m.setError(fmt.Errorf("load older messages of #%s: %w", r.info.label(), msg.err))
		return
	}
	if i == m.cur && !m.statusErr {
		m.setStatus(chatHelp)
	}
	if n := len(msg.page.Rejected); n > 0 {
		m.setError(fmt.Errorf("dropped %d frame%s of #%s's history: %w", n, plural(n), r.info.label(), msg.page.Rejected[0]))
	}
	added := 0
	var oldest uint64
	for _, pm := range msg.page.Messages {
		if msg.before != 0 && pm.Seq >= msg.before {
			continue // not older: the subscription shows it
		}
		if oldest == 0 || (pm.Seq != 0 && pm.Seq < oldest) {
			oldest = pm.Seq
		}
		if pm.Type == e2e.TypeReact {
			r.react(pm)
			continue
		}
		if _, dup := r.byID[pm.ID]; dup {
			continue
		}
		e := &chatEntry{m: pm}
		r.entries = append(r.entries, e)
		r.byID[pm.ID] = e
		added++
	}
	if oldest == 0 || oldest <= max(msg.page.FirstSeq, 1) {
		r.exhausted = true
	}
	if added > 0 {
		// The room log's order; messages without a sequence (none
		// should be mixed in) after those with one, as they came.
		slices.SortStableFunc(r.entries, func(a, b *chatEntry) int {
			return cmp.Compare(seqOrder(a.m.Seq), seqOrder(b.m.Seq))
		})
		for j, e := range r.entries {
			e.n = j + 1
		}
	}
	if i != m.cur {
		return
	}
	m.refreshAt(r, anchor)
	if scroll {
		m.pane.PageUp()
	}
}

// seqOrder sorts messages without a sequence last.
func seqOrder(seq uint64) uint64 {
	if seq == 0 {
		return math.MaxUint64
	}
	return seq
}

// lookupName asks for the display name of pub once.
func (m *chatModel) lookupName(pub string) tea.Cmd {
	if _, ok := m.names[pub]; ok || m.pending[pub] || pub == "" {
		return nil
	}
	m.pending[pub] = true
	return m.do(chatAction{Kind: actName, Text: pub})
}

// joined adds and opens a room that /join found.
func (m *chatModel) joined(msg chatJoinedMsg) {
	if msg.err != nil {
		m.setError(fmt.Errorf("open %s: %w", cleanLine(msg.arg), msg.err))
		return
	}
	i := m.roomIndex(msg.room.ID)
	if i < 0 {
		m.rooms = append(m.rooms, newChatRoom(msg.room))
		i = len(m.rooms) - 1
	}
	m.rooms[i].info = msg.room
	m.switchTo(i)
}

// switchTo opens room i, modulo the number of rooms.
func (m *chatModel) switchTo(i int) {
	if len(m.rooms) == 0 {
		return
	}
	m.cur = ((i % len(m.rooms)) + len(m.rooms)) % len(m.rooms)
	r := m.rooms[m.cur]
	r.unread = 0
	m.setStatus(fmt.Sprintf("#%s (%s) · %s", r.info.label(), modeName(r.info.Mode), chatHelp))
	m.refresh()
	m.pane.GotoBottom()
}

func (m *chatModel) current() *chatRoom {
	if m.cur < 0 || m.cur >= len(m.rooms) {
		return nil
	}
	return m.rooms[m.cur]
}

func (m *chatModel) roomIndex(id string) int {
	return slices.IndexFunc(m.rooms, func(r *chatRoom) bool { return r.info.ID == id })
}

// findRoom finds a room by ID, else by name.
func (m *chatModel) findRoom(arg string) int {
	if i := m.roomIndex(arg); i >= 0 {
		return i
	}
	return slices.IndexFunc(m.rooms, func(r *chatRoom) bool { return r.info.Name == arg })
}

func (m *chatModel) roomLabel(id string) string {
	if i := m.roomIndex(id); i >= 0 {
		return "#" + m.rooms[i].info.label()
	}
	return id
}

func (m *chatModel) setStatus(s string) { m.status, m.statusErr = s, false }

func (m *chatModel) setError(err error) {
	m.status, m.statusErr = cleanLine(err.Error()), true
}

// Layout: two header lines (room, room list), the message pane, the
// status line, the input line.
const chatChromeLines = 4

func (m *chatModel) resize(w, h int) {
	m.width, m.height = max(w, 20), max(h, chatChromeLines+1)
	m.pane.SetWidth(m.width)
	m.pane.SetHeight(m.height - chatChromeLines)
	m.input.SetWidth(m.width - lipgloss.Width(m.input.Prompt) - 1)
	m.refresh()
}

// refresh re-renders the current room into the pane, following new
// messages when the pane was at the bottom.
func (m *chatModel) refresh() {
	follow := m.pane.AtBottom()
	r := m.current()
	if r == nil {
		m.pane.SetContent("")
		return
	}
	content, _ := m.renderRoom(r)
	m.pane.SetContent(content)
	if follow {
		m.pane.GotoBottom()
	}
}

// paneAnchor is a place in the pane that survives adding older messages:
// the message at the top of the pane, and how many lines of it are
// scrolled past.
type paneAnchor struct {
	entry *chatEntry
	delta int
}

// anchor returns the current room's paneAnchor (entry nil when it shows
// no message).
func (m *chatModel) anchor(r *chatRoom) paneAnchor {
	_, starts := m.renderRoom(r)
	offset := m.pane.YOffset()
	var a paneAnchor
	for e, line := range starts {
		if line <= offset && (a.entry == nil || line > starts[a.entry]) {
			a = paneAnchor{entry: e, delta: offset - line}
		}
	}
	return a
}

// refreshAt re-renders the current room r with a's message back at the
// top of the pane.
func (m *chatModel) refreshAt(r *chatRoom, a paneAnchor) {
	content, starts := m.renderRoom(r)
	m.pane.SetContent(content)
	line, ok := starts[a.entry]
	if !ok {
		m.pane.GotoBottom()
		return
	}
	m.pane.SetYOffset(line + a.delta)
}

// renderRoom lays the room's messages out as threads: each message in
// the room's order, its replies indented under it. It also returns the
// pane line (soft-wrapped, as the pane counts them) where each message
// starts.
func (m *chatModel) renderRoom(r *chatRoom) (string, map[*chatEntry]int) {
	starts := map[*chatEntry]int{}
	if len(r.entries) == 0 {
		return m.styles.marker.Render(fmt.Sprintf("No messages in #%s yet. Say something.", r.info.label())), starts
	}
	children := map[string][]*chatEntry{}
	var roots []*chatEntry
	for _, e := range r.entries {
		if _, ok := r.byID[e.m.ReplyTo]; ok && e.m.ReplyTo != e.m.ID {
			children[e.m.ReplyTo] = append(children[e.m.ReplyTo], e)
		} else {
			roots = append(roots, e)
		}
	}
	var b strings.Builder
	line := 0
	if r.exhausted {
		top := m.styles.marker.Render(fmt.Sprintf("— the beginning of #%s (as far as you may see) —", r.info.label()))
		b.WriteString(top)
		b.WriteByte('\n')
		line += paneLines(top, m.pane.Width())
	}
	seen := map[string]bool{}
	var walk func(e *chatEntry, depth int)
	walk = func(e *chatEntry, depth int) {
		if seen[e.m.ID] {
			return
		}
		seen[e.m.ID] = true
		text := m.renderEntry(r, e, depth)
		starts[e] = line
		line += paneLines(text, m.pane.Width())
		b.WriteString(text)
		b.WriteByte('\n')
		for _, c := range children[e.m.ID] {
			walk(c, depth+1)
		}
	}
	for _, e := range roots {
		walk(e, 0)
	}
	return strings.TrimSuffix(b.String(), "\n"), starts
}

// paneLines is the number of pane lines text takes, soft-wrapped at
// width cells as the pane wraps it.
func paneLines(text string, width int) int {
	n := 0
	for l := range strings.SplitSeq(text, "\n") {
		w := ansi.StringWidth(l)
		if width <= 0 || w == 0 {
			n++
			continue
		}
		n += (w + width - 1) / width
	}
	return n
}

// renderEntry formats one message:
//
//	[1] 15:04 alice: hello  👍 2
//	  ↳ [2] 15:05 bob: on it
//	[3] 15:06 bob ↳ Kx3abcdefg…: answers a message not shown
func (m *chatModel) renderEntry(r *chatRoom, e *chatEntry, depth int) string {
	s := m.styles
	var b strings.Builder
	indent := strings.Repeat("  ", min(depth, maxThreadDepth))
	b.WriteString(indent)
	if depth > 0 {
		b.WriteString(s.marker.Render("↳ "))
	}
	b.WriteString(s.number.Render(fmt.Sprintf("[%d]", e.n)))
	b.WriteByte(' ')
	b.WriteString(s.time.Render(e.m.Time.Local().Format("15:04")))
	b.WriteByte(' ')
	b.WriteString(m.senderStyle(e.m.Sender).Render(m.displayName(e.m.Sender)))
	if e.m.ReplyTo != "" && depth == 0 {
		b.WriteString(s.marker.Render(" ↳ " + short(e.m.ReplyTo)))
	}
	if e.m.Type != e2e.TypeMsg {
		b.WriteString(s.marker.Render(" [" + cleanLine(e.m.Type) + "]"))
	}
	b.WriteString(": ")
	cont := "\n" + indent + "    "
	b.WriteString(strings.ReplaceAll(clean(string(e.m.Data)), "\n", cont))
	if rs := reactionSummary(r.reactions[e.m.ID]); rs != "" {
		b.WriteString("  ")
		b.WriteString(s.reaction.Render(rs))
	}
	return b.String()
}

// reactionSummary is "👍 2  🎉 1": each emoji with the number of members
// who reacted with it, most first.
func reactionSummary(byEmoji map[string]map[string]bool) string {
	type count struct {
		emoji string
		n     int
	}
	counts := make([]count, 0, len(byEmoji))
	for emoji, senders := range byEmoji {
		counts = append(counts, count{emoji, len(senders)})
	}
	slices.SortFunc(counts, func(a, b count) int {
		if a.n != b.n {
			return b.n - a.n
		}
		return strings.Compare(a.emoji, b.emoji)
	})
	parts := make([]string, len(counts))
	for i, c := range counts {
		parts[i] = fmt.Sprintf("%s %d", c.emoji, c.n)
	}
	return strings.Join(parts, "  ")
}

// displayName is the user's name, else the start of the key.
func (m *chatModel) displayName(pub string) string {
	name := cleanLine(m.names[pub])
	if name == "" {
		name = short(pub)
	}
	if pub == m.self {
		name += " (you)"
	}
	return name
}

func (m *chatModel) senderStyle(pub string) lipgloss.Style {
	if pub == m.self {
		return m.styles.self
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(pub))
	return m.styles.senders[h.Sum32()%uint32(len(m.styles.senders))]
}

// View draws the header, the message pane, the status and the input.
func (m *chatModel) View() tea.View {
	s := m.styles
	title := "unibus chat"
	if r := m.current(); r != nil {
		title = fmt.Sprintf("unibus chat · #%s · %s · %s", r.info.label(), modeName(r.info.Mode), m.displayName(m.self))
	}
	rooms := make([]string, 0, len(m.rooms)+1)
	rooms = append(rooms, "rooms:")
	for i, r := range m.rooms {
		label := "#" + r.info.label()
		switch {
		case i == m.cur:
			rooms = append(rooms, s.current.Render(label))
		case r.unread > 0:
			rooms = append(rooms, s.unread.Render(fmt.Sprintf("%s (%d)", label, r.unread)))
		default:
			rooms = append(rooms, s.room.Render(label))
		}
	}
	status := s.status
	if m.statusErr {
		status = s.errStatus
	}
	lines := []string{
		ansi.Truncate(s.header.Render(title), m.width, "…"),
		ansi.Truncate(strings.Join(rooms, " "), m.width, "…"),
		m.pane.View(),
		ansi.Truncate(status.Render(m.status), m.width, "…"),
		m.input.View(),
	}
	v := tea.NewView(strings.Join(lines, "\n"))
	v.AltScreen = true
	v.WindowTitle = title
	if c := m.input.Cursor(); c != nil {
		c.Position.Y = m.height - 1
		v.Cursor = c
	}
	return v
}
