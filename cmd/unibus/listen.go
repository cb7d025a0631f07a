package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
)

// listenCommand prints the messages of one or more rooms as they arrive.
type listenCommand struct {
	app *app
	// JSON prints one JSON object per message (JSON lines).
	JSON bool
	// Count, when positive, stops after that many messages.
	Count int
	// Start is where each room's messages begin; by default, with the
	// messages sent from now on.
	Start startFlags
}

func newListenCommand(a *app) *cobra.Command {
	c := &listenCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "listen ROOM... [--last N | --since TIME | --from SEQ] [--json] [--count N]",
		Short: "Print the messages of rooms as they arrive",
		Long: `Print the messages and reactions of each ROOM (a room ID or the name of one
of your rooms) as they arrive, until interrupted (Ctrl-C) or, with --count N,
after N of them. Only frames that verify (signature, membership, epoch,
replay) and decrypt are printed; rejected ones are reported on standard
error.

By default only messages sent from now on are printed. A start point prints
the room's stored messages first, oldest first, then the new ones as they
arrive, with nothing missed or printed twice in between (nor across a
reconnection); give at most one:
  --last N      the last N messages of each room
  --since TIME  those stored since TIME: a duration back from now (90m, 1h,
                2d), an RFC 3339 time (2026-01-02T15:04:05Z) or a date
  --from SEQ    those from room-log sequence SEQ on (the seq of --json, of
                unibus history and of unibus send): resume where you were
Only what the room kept is there (a room created with history "none" keeps
nothing), and only from your invitation on.

Human-readable lines by default; with --json one JSON object per line, for
scripts:

  {"seq":42,"id":"…","room":"…","sender":"U…","type":"MSG","thread":"",
   "reply_to":"","time":"2006-01-02T15:04:05.000Z","text":"hello"}

seq is the message's sequence in the room log (0 in a room that keeps no
history); type is MSG or REACT (text is then the emoji and reply_to the
message reacted to); thread is the thread's root message ID, reply_to the
message answered. Empty strings when unset.`,
		Example: `  unibus listen ops
  unibus listen ops alerts --json | jq -r .text
  unibus listen ops --last 20
  unibus listen ops --since 1h
  unibus listen ops --json --from 1043   # resume after seq 1042
  unibus listen ops --json --count 1`,
	}, c)
	cmd.Flags().BoolVar(&c.JSON, "json", false, "print JSON lines")
	cmd.Flags().IntVarP(&c.Count, "count", "n", 0, "stop after N messages (0: until interrupted)")
	c.Start.register(cmd)
	return cmd
}

// messageJSON is one line of `listen --json` and `history --json`.
type messageJSON struct {
	Seq     uint64    `json:"seq"`
	ID      string    `json:"id"`
	Room    string    `json:"room"`
	Sender  string    `json:"sender"`
	Type    string    `json:"type"`
	Thread  string    `json:"thread"`
	ReplyTo string    `json:"reply_to"`
	Time    time.Time `json:"time"`
	Text    string    `json:"text"`
}

// Run subscribes to the rooms and prints messages until ctx ends or Count
// messages were printed. The end of ctx is a normal end (Ctrl-C).
func (c *listenCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 1, -1, "ROOM..."); err != nil {
		return err
	}
	if c.Count < 0 {
		return usagef("--count must not be negative, got %d", c.Count)
	}
	start, err := c.Start.parse(time.Now())
	if err != nil {
		return err
	}
	p := &printer{c: c, done: make(chan struct{}), names: map[string]string{}}
	subs, err := c.subscribe(ctx, args, start.subscribeOptions(), p)
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	if err != nil {
		_ = p.stop()
		return err
	}
	select {
	case <-ctx.Done():
	case <-p.done:
	}
	return p.stop()
}

// subscribe connects and subscribes to every room, within --timeout.
// opts say where each room's messages start.
func (c *listenCommand) subscribe(ctx context.Context, args []string, opts []client.SubscribeOption, p *printer) ([]*client.Subscription, error) {
	ctx, cancel := c.app.bounded(ctx)
	defer cancel()
	conn, err := c.app.connectWithKey(ctx)
	if err != nil {
		return nil, err
	}
	var subs []*client.Subscription
	seen := map[string]bool{}
	for _, arg := range args {
		room, err := resolveRoom(ctx, conn, arg)
		if err != nil {
			return subs, err
		}
		if seen[room.RoomID] {
			continue
		}
		seen[room.RoomID] = true
		p.mu.Lock()
		p.names[room.RoomID] = room.Name
		p.mu.Unlock()
		roomID := room.RoomID
		sub, err := conn.Subscribe(ctx, roomID, p.print, func(err error) { p.reject(roomID, err) }, opts...)
		if err != nil {
			return subs, fmt.Errorf("listen: %w", err)
		}
		subs = append(subs, sub)
	}
	// On standard error, so that JSON lines stay clean; also the sign that
	// the subscriptions are in place.
	p.mu.Lock()
	fmt.Fprintf(c.app.Stderr, "listening to %d room%s; Ctrl-C to stop\n", len(subs), plural(len(subs)))
	p.mu.Unlock()
	return subs, nil
}

// printer writes the messages of every subscription, one at a time.
type printer struct {
	c     *listenCommand
	done  chan struct{}
	mu    sync.Mutex
	n     int
	names map[string]string // room ID → name
	werr  error
}

// print writes one message; after Count messages, or a write error, it
// ends the listen.
func (p *printer) print(m client.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished() {
		return
	}
	var err error
	if p.c.JSON {
		err = writeMessageJSON(p.c.app.Stdout, m)
	} else {
		_, err = fmt.Fprintln(p.c.app.Stdout, humanLine(m, p.names[m.Room]))
	}
	p.n++
	if err != nil {
		p.werr = fmt.Errorf("write message: %w", err)
	}
	if err != nil || (p.c.Count > 0 && p.n >= p.c.Count) {
		close(p.done)
	}
}

// finished reports whether done is closed; p.mu is held.
func (p *printer) finished() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// reject reports a frame that did not verify or decrypt.
func (p *printer) reject(roomID string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished() {
		return
	}
	fmt.Fprintf(p.c.app.Stderr, "unibus: dropped a frame in room %s: %v\n", roomID, err)
}

// stop ends printing (nothing is written after it returns) and returns
// the write error, if any.
func (p *printer) stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.finished() {
		close(p.done)
	}
	return p.werr
}

func writeMessageJSON(w io.Writer, m client.Message) error {
	b, err := json.Marshal(messageJSON{
		Seq: m.Seq, ID: m.ID, Room: m.Room, Sender: m.Sender, Type: m.Type, Thread: m.Thread, ReplyTo: m.ReplyTo,
		Time: m.Time.UTC(), Text: string(m.Data),
	})
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// humanLine formats a message for a terminal:
//
//	15:04:05 #ops UABCDEFGHI…: hello  [id Kx3…]
//	15:04:05 #ops UABCDEFGHI… ↳ Kx3abcdefg…: on it  [id Lm2…]
//	15:04:05 #ops UABCDEFGHI… reacted 👍 to Kx3abcdefg…
func humanLine(m client.Message, roomName string) string {
	room := roomName
	if room == "" {
		room = m.Room
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%s ", m.Time.Local().Format(time.TimeOnly), cleanLine(room))
	writeMessageBody(&b, m)
	return b.String()
}

// writeMessageBody writes what humanLine and historyLine show after the
// time and place: the sender, what the message answers or reacts to, its
// text and ID.
func writeMessageBody(b *strings.Builder, m client.Message) {
	b.WriteString(short(m.Sender))
	switch m.Type {
	case e2e.TypeReact:
		fmt.Fprintf(b, " reacted %s to %s", cleanLine(string(m.Data)), short(m.ReplyTo))
		return
	case e2e.TypeMsg:
	default:
		fmt.Fprintf(b, " [%s]", cleanLine(m.Type))
	}
	if m.ReplyTo != "" {
		fmt.Fprintf(b, " ↳ %s", short(m.ReplyTo))
	}
	text := clean(string(m.Data))
	text = strings.ReplaceAll(text, "\n", "\n    ")
	fmt.Fprintf(b, ": %s  [id %s]", text, m.ID)
}
