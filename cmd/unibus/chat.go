package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/term"
	"github.com/spf13/cobra"

	"github.com/unibus/unibus/client"
)

// chatQueueDepth bounds the actions waiting for the bus (messages being
// sent, rooms being opened, names being looked up).
const chatQueueDepth = 64

// chatCommand is the terminal chat.
type chatCommand struct {
	app *app
}

func newChatCommand(a *app) *cobra.Command {
	c := &chatCommand{app: a}
	return leaf(&cobra.Command{
		Use:   "chat [ROOM]",
		Short: "Chat in your rooms in a terminal UI",
		Long: `Open a terminal chat on ROOM (a room ID or the name of one of your rooms;
by default the first of your rooms by name). Every room you belong to is
listed in the header and followed while the chat is open; messages are
sealed and signed on this machine in encrypted rooms, and only messages that
verify and decrypt are shown. Each room opens with its last screenful of
messages (what the room keeps: nothing in a room created with history
"none"); PgUp at the top of a room loads the page before, as far back as
your invitation. A room ID that starts with "-" goes after "--":
unibus chat -- -AbC….

Each message has a number in [brackets], in the room's order (loading older
messages renumbers them); replies are shown indented under the message they
answer (↳), reactions as counts after it. A room in the header with a count,
#ops (3), has that many messages sent since the chat opened that you have
not looked at.

Keys and commands:
  Enter                    send the input line to the current room
  /reply N TEXT            answer message N in its thread (also /r)
  /react N EMOJI           react to message N
  /join ROOM               open another of your rooms, by name or ID
  Tab, Ctrl+N              next room (also /next)
  Shift+Tab, Ctrl+P        previous room (also /prev)
  PgUp, PgDn               scroll the messages; PgUp at the top loads older ones
  //TEXT                   send a message that starts with "/"
  /help                    show the keys in the status line
  /quit, Ctrl+C            leave (exit code 0)`,
		Example: `  unibus chat ops
  unibus -i bob.nk chat`,
	}, c)
}

// Run checks the room and the connection, then runs the chat until /quit,
// Ctrl+C or the end of ctx. Failing to reach the bus or to open ROOM is an
// error before the terminal is taken over.
func (c *chatCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 0, 1, "[ROOM]"); err != nil {
		return err
	}
	conn, rooms, start, err := c.open(ctx, args)
	if err != nil {
		return err
	}
	// pctx is the program's: cancelled before Run (on an error), it
	// releases subscription handlers waiting in Send. The end of ctx quits
	// the program the way /quit does, so that it restores the terminal and
	// stops reading its input before Run returns.
	pctx, pcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer pcancel()
	s := newChatSession(pctx, conn, c.app.Timeout, c.backlog())
	model := newChatModel(conn.Identity().PublicKey(), rooms, start, s.do)
	p := tea.NewProgram(model,
		tea.WithContext(pctx),
		tea.WithInput(c.app.Stdin),
		tea.WithOutput(c.app.Stdout),
		// Size for an output that is not a terminal; a terminal's own
		// size wins.
		tea.WithWindowSize(80, 24),
		// main owns SIGINT and SIGTERM (ctx); in the terminal's raw mode
		// Ctrl+C is a key.
		tea.WithoutSignalHandler(),
	)
	s.send = p.Send
	notice, err := s.subscribeAll(ctx, rooms, start)
	if err != nil {
		pcancel()
		s.close()
		return err
	}
	if notice != nil {
		model.setError(notice)
	}
	s.start()
	ran, quitter := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(quitter)
		select {
		case <-ctx.Done():
			p.Quit() // returns at once when the program has ended
		case <-ran:
		}
	}()
	_, err = p.Run()
	close(ran)
	<-quitter
	pcancel()
	s.close()
	if ctx.Err() != nil {
		return nil // interrupted: a normal end, like listen's
	}
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	return nil
}

// backlog is the number of messages each room opens with: about a
// screenful of the terminal on standard output (24 lines when it is not
// one).
func (c *chatCommand) backlog() int {
	height := 24
	if f, ok := c.app.Stdout.(*os.File); ok && term.IsTerminal(f.Fd()) {
		if _, h, err := term.GetSize(f.Fd()); err == nil && h > 0 {
			height = h
		}
	}
	return max(height-chatChromeLines, historyPageMin)
}

// open connects, lists the caller's rooms and finds the one to show
// first, all within --timeout.
func (c *chatCommand) open(ctx context.Context, args []string) (*client.Conn, []chatRoomInfo, int, error) {
	ctx, cancel := c.app.bounded(ctx)
	defer cancel()
	conn, err := c.app.connectWithKey(ctx)
	if err != nil {
		return nil, nil, 0, err
	}
	refs, err := conn.ListMyRooms(ctx)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("list rooms: %w", err)
	}
	rooms := make([]chatRoomInfo, 0, len(refs)+1)
	for _, r := range refs {
		rooms = append(rooms, chatRoomInfo{ID: r.RoomID, Name: r.Name, Mode: r.Mode})
	}
	slices.SortFunc(rooms, func(a, b chatRoomInfo) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if len(args) == 0 {
		if len(rooms) == 0 {
			return nil, nil, 0, fmt.Errorf("chat: %w: you belong to no room yet (create one with `unibus rooms create NAME`, or ask an owner to invite you)", client.ErrNotFound)
		}
		return conn, rooms, 0, nil
	}
	room, err := resolveRoom(ctx, conn, args[0])
	if err != nil {
		return nil, nil, 0, err
	}
	i := slices.IndexFunc(rooms, func(r chatRoomInfo) bool { return r.ID == room.RoomID })
	if i < 0 { // joined since the list was made
		rooms = append(rooms, roomInfoOf(room))
		i = len(rooms) - 1
	}
	return conn, rooms, i, nil
}

// chatSession connects the chat's model to the bus: subscriptions send
// what arrives to the program, and one worker performs the model's
// actions in order. close stops both and waits for them.
type chatSession struct {
	conn    *client.Conn
	timeout time.Duration
	// backlog is the number of stored messages a room opens with.
	backlog int
	// send delivers a message to the program (tea.Program.Send: a no-op
	// once the program has ended).
	send func(tea.Msg)

	ctx    context.Context
	cancel context.CancelFunc
	queue  chan chatAction
	wg     sync.WaitGroup

	mu   sync.Mutex
	subs map[string]*client.Subscription
}

func newChatSession(ctx context.Context, conn *client.Conn, timeout time.Duration, backlog int) *chatSession {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	ctx, cancel := context.WithCancel(ctx)
	return &chatSession{
		conn: conn, timeout: timeout, backlog: backlog, ctx: ctx, cancel: cancel,
		queue: make(chan chatAction, chatQueueDepth),
		subs:  map[string]*client.Subscription{},
	}
}

// do returns the command that queues a for the worker. The command only
// queues: bubbletea does not wait for the goroutines that run commands, so
// nothing slow happens in them.
func (s *chatSession) do(a chatAction) tea.Cmd {
	return func() tea.Msg {
		select {
		case s.queue <- a:
			return nil
		case <-s.ctx.Done():
			return nil
		default:
		}
		err := fmt.Errorf("%w: too many requests in flight, try again", client.ErrTooManyRequests)
		switch a.Kind {
		case actName:
			return chatNameMsg{pub: a.Text, err: err}
		case actJoin:
			return chatJoinedMsg{arg: a.Text, err: err}
		case actHistory:
			return chatHistoryMsg{room: a.Room, before: a.Before, err: err}
		}
		return chatDoneMsg{action: a, err: err}
	}
}

// start starts the worker.
func (s *chatSession) start() {
	s.wg.Go(func() {
		for {
			select {
			case <-s.ctx.Done():
				return
			case a := <-s.queue:
				if msg := s.perform(a); msg != nil {
					s.send(msg)
				}
			}
		}
	})
}

// close stops the worker and the subscriptions and waits for them.
func (s *chatSession) close() {
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	subs := s.subs
	s.subs = map[string]*client.Subscription{}
	s.mu.Unlock()
	for _, sub := range subs {
		_ = sub.Unsubscribe()
	}
}

// subscribeAll follows every room; only failing to follow rooms[start],
// the room asked for, is an error. The other rooms' failures come back as
// a notice for the status line.
func (s *chatSession) subscribeAll(ctx context.Context, rooms []chatRoomInfo, start int) (notice, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.subscribe(ctx, rooms[start].ID); err != nil {
		return nil, fmt.Errorf("chat: %w", err)
	}
	var failed []string
	for i, r := range rooms {
		if i == start {
			continue
		}
		if err := s.subscribe(ctx, r.ID); err != nil {
			failed = append(failed, fmt.Sprintf("#%s: %v", r.label(), err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("not following %s", strings.Join(failed, "; ")), nil
	}
	return nil, nil
}

// subscribe follows a room, once, from its last backlog messages.
func (s *chatSession) subscribe(ctx context.Context, roomID string) error {
	s.mu.Lock()
	_, ok := s.subs[roomID]
	s.mu.Unlock()
	if ok {
		return nil
	}
	sub, err := s.conn.Subscribe(ctx, roomID,
		func(m client.Message) { s.send(chatIncomingMsg{m: m}) },
		func(err error) { s.send(chatRejectMsg{room: roomID, err: err}) },
		client.Last(s.backlog))
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.subs[roomID] = sub
	s.mu.Unlock()
	return nil
}

// perform runs one action within --timeout and returns its outcome for
// the model.
func (s *chatSession) perform(a chatAction) tea.Msg {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	defer cancel()
	switch a.Kind {
	case actName:
		u, err := s.conn.GetUser(ctx, a.Text)
		return chatNameMsg{pub: a.Text, name: u.Name, err: err}
	case actJoin:
		room, err := resolveRoom(ctx, s.conn, a.Text)
		if err == nil {
			err = s.subscribe(ctx, room.RoomID)
		}
		return chatJoinedMsg{arg: a.Text, room: roomInfoOf(room), err: err}
	case actHistory:
		page, err := s.conn.History(ctx, a.Room, client.HistoryQuery{Last: a.Last, Before: a.Before, Limit: a.Last})
		return chatHistoryMsg{room: a.Room, before: a.Before, page: page, err: err}
	}
	var err error
	data := []byte(a.Text)
	switch a.Kind {
	case actSend:
		_, err = s.conn.Publish(ctx, a.Room, data)
	case actReply:
		_, err = s.conn.PublishReply(ctx, a.Room, a.Target, data)
	case actReact:
		_, err = s.conn.React(ctx, a.Room, a.Target, a.Text)
	default:
		err = fmt.Errorf("unknown chat action %d", a.Kind)
	}
	if err != nil {
		return chatDoneMsg{action: a, err: fmt.Errorf("send: %w", err)}
	}
	return chatDoneMsg{action: a}
}
