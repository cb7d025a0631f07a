package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/subjects"
)

// historyCommand prints the stored messages of a room.
type historyCommand struct {
	app *app
	// Start is where the messages begin; by default with the first one
	// the caller may see.
	Start startFlags
	// Limit, when positive, is the most messages printed.
	Limit int
	// JSON prints one JSON object per message (JSON lines).
	JSON bool
	// pageSize is the most messages asked for at once: 0 means
	// subjects.MaxHistoryLimit (tests make it small).
	pageSize int
}

func newHistoryCommand(a *app) *cobra.Command {
	c := &historyCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "history ROOM [--last N | --since TIME | --from SEQ] [--limit N] [--json]",
		Short: "Print the stored messages of a room, oldest first",
		Long: `Print the messages and reactions that ROOM (a room ID or the name of one of
your rooms) keeps, oldest first, and exit. Each is verified and, in an
encrypted room, decrypted on this machine, as listen does; frames that do
not verify are reported on standard error.

Without a start point, every message you may see is printed: those stored
from your invitation on (a room created with history "none" keeps nothing).
Give at most one start point:
  --last N      the last N messages
  --since TIME  those stored since TIME: a duration back from now (90m, 1h,
                2d), an RFC 3339 time (2026-01-02T15:04:05Z) or a date
  --from SEQ    those from room-log sequence SEQ on
--limit N prints N messages at most (with --last, the newest). Messages
that arrive while the pages are read are left for listen (` + "`unibus listen ROOM --from SEQ`" + ` with the last seq
printed plus one).

One line per message by default, with its sequence in the room log first:

  1042 2026-01-02 15:04:05 UABCDEFGHI…: hello  [id Kx3…]
  1043 2026-01-02 15:04:09 UBCDEFGHIJ… ↳ Kx3abcdefg…: on it  [id Lm2…]
  1044 2026-01-02 15:04:10 UABCDEFGHI… reacted 👍 to Kx3abcdefg…

With --json one JSON object per line, as listen --json prints them:

  {"seq":1042,"id":"…","room":"…","sender":"U…","type":"MSG","thread":"",
   "reply_to":"","time":"2006-01-02T15:04:05.000Z","text":"hello"}`,
		Example: `  unibus history ops
  unibus history ops --last 20
  unibus history ops --since 2h --json | jq -r .text
  unibus history ops --from 1042 --limit 100`,
	}, c)
	c.Start.register(cmd)
	cmd.Flags().IntVarP(&c.Limit, "limit", "n", 0, "print at most `N` messages, the newest with --last (0: no limit)")
	cmd.Flags().BoolVar(&c.JSON, "json", false, "print JSON lines")
	return cmd
}

// Run prints the room's history, one page of the room log after the
// other. --timeout bounds connecting and each page.
func (c *historyCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 1, 1, "ROOM"); err != nil {
		return err
	}
	if c.Limit < 0 {
		return usagef("--limit must not be negative, got %d", c.Limit)
	}
	start, err := c.Start.parse(time.Now())
	if err != nil {
		return err
	}
	conn, room, err := c.open(ctx, args[0])
	if err != nil {
		return err
	}
	h := &historyReader{app: c.app, conn: conn, roomID: room.RoomID, json: c.JSON, pageSize: c.pageSize}
	if h.pageSize <= 0 {
		h.pageSize = subjects.MaxHistoryLimit
	}
	if start.last > 0 {
		n := start.last
		if c.Limit > 0 {
			n = min(n, c.Limit)
		}
		return h.last(ctx, n)
	}
	return h.forward(ctx, client.HistoryQuery{From: start.from, Since: start.since}, c.Limit)
}

// open connects and resolves the room, within --timeout.
func (c *historyCommand) open(ctx context.Context, arg string) (*client.Conn, subjects.RoomInfo, error) {
	ctx, cancel := c.app.bounded(ctx)
	defer cancel()
	conn, err := c.app.connectWithKey(ctx)
	if err != nil {
		return nil, subjects.RoomInfo{}, err
	}
	room, err := resolveRoom(ctx, conn, arg)
	if err != nil {
		return nil, subjects.RoomInfo{}, err
	}
	return conn, room, nil
}

// historyReader pages through one room's log and prints it.
type historyReader struct {
	app    *app
	conn   *client.Conn
	roomID string
	json   bool
	// pageSize is the most messages a page asks for.
	pageSize int
}

// page reads one page within --timeout; the rejected frames are reported
// on standard error.
func (h *historyReader) page(ctx context.Context, q client.HistoryQuery) (client.HistoryPage, error) {
	ctx, cancel := h.app.bounded(ctx)
	defer cancel()
	p, err := h.conn.History(ctx, h.roomID, q)
	if err != nil {
		return client.HistoryPage{}, fmt.Errorf("history: %w", err)
	}
	for _, err := range p.Rejected {
		fmt.Fprintf(h.app.Stderr, "unibus: dropped a frame in room %s: %v\n", h.roomID, err)
	}
	return p, nil
}

// forward prints from q's start on, up to the end of the log as the first
// page found it (messages stored meanwhile are not chased), at most limit
// messages when limit is positive.
func (h *historyReader) forward(ctx context.Context, q client.HistoryQuery, limit int) error {
	printed := 0
	for first := true; ; first = false {
		q.Limit = h.pageSize
		if limit > 0 {
			q.Limit = min(q.Limit, limit-printed)
		}
		p, err := h.page(ctx, q)
		if err != nil {
			return err
		}
		if first {
			if p.LastSeq == 0 {
				return nil // nothing stored
			}
			q.Until = p.LastSeq
		}
		if err := h.print(p.Messages); err != nil {
			return err
		}
		printed += len(p.Messages)
		if p.Next == 0 || (limit > 0 && printed >= limit) {
			return nil
		}
		q.From, q.Since = p.Next, time.Time{}
	}
}

// last prints the last n messages: pages backwards from the end until it
// has n or reaches the first message the caller may see, then prints them
// oldest first.
func (h *historyReader) last(ctx context.Context, n int) error {
	var pages [][]client.Message
	var before uint64
	for got := 0; got < n; {
		want := min(n-got, h.pageSize)
		p, err := h.page(ctx, client.HistoryQuery{Last: want, Before: before, Limit: want})
		if err != nil {
			return err
		}
		if len(p.Messages) == 0 {
			break
		}
		msgs := p.Messages
		if len(msgs) > n-got { // a page never holds more than asked; be sure
			msgs = msgs[len(msgs)-(n-got):]
		}
		pages = append(pages, msgs)
		got += len(msgs)
		oldest := msgs[0].Seq
		if oldest <= p.FirstSeq || oldest <= 1 || (before != 0 && oldest >= before) {
			break
		}
		before = oldest
	}
	slices.Reverse(pages)
	for _, msgs := range pages {
		if err := h.print(msgs); err != nil {
			return err
		}
	}
	return nil
}

// print writes messages, as lines or JSON lines.
func (h *historyReader) print(msgs []client.Message) error {
	for _, m := range msgs {
		var err error
		if h.json {
			err = writeMessageJSON(h.app.Stdout, m)
		} else {
			_, err = fmt.Fprintln(h.app.Stdout, historyLine(m))
		}
		if err != nil {
			return fmt.Errorf("write message: %w", err)
		}
	}
	return nil
}

// historyLine formats a stored message for a terminal, its sequence and
// date first:
//
//	1042 2026-01-02 15:04:05 UABCDEFGHI…: hello  [id Kx3…]
func historyLine(m client.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s ", m.Seq, m.Time.Local().Format(time.DateTime))
	writeMessageBody(&b, m)
	return b.String()
}
