package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/subjects"
)

// maxStdinMessage bounds a message read from standard input (the bus's
// payload limit is lower still).
const maxStdinMessage = 1 << 20

// sendCommand publishes a message to a room.
type sendCommand struct {
	app *app
	// ReplyTo, when set, is the ID of the message this one answers, in its
	// thread.
	ReplyTo string
}

func newSendCommand(a *app) *cobra.Command {
	c := &sendCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "send ROOM MESSAGE... [--reply-to ID]",
		Short: "Send a message to a room and print its ID and sequence",
		Long: `Send MESSAGE (the remaining arguments joined by spaces; a single "-" reads
it from standard input) to ROOM, a room ID or the name of one of your rooms.
In an encrypted room the message is sealed and signed on this machine.

send returns once the room has stored the message, and prints its ID and
its sequence in the room log, separated by a space:

  Kx3…(43 characters) 1042

In a room that keeps no history (created with history "none") the message
is delivered, not stored, and only the ID is printed.

With --reply-to ID the message answers message ID in its thread.`,
		Example: `  unibus send ops "deploy done"
  unibus send ops --reply-to Kx3… "on it"
  echo hello | unibus send ops -`,
	}, c)
	cmd.Flags().StringVarP(&c.ReplyTo, "reply-to", "r", "", "ID of the message to answer (threads the reply)")
	return cmd
}

// Run sends the message and prints its ID.
func (c *sendCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 2, -1, "ROOM MESSAGE..."); err != nil {
		return err
	}
	if c.ReplyTo != "" {
		if err := checkMessageID(c.ReplyTo); err != nil {
			return err
		}
	}
	text := strings.Join(args[1:], " ")
	if len(args) == 2 && args[1] == "-" {
		in := c.app.Stdin
		if in == nil {
			in = strings.NewReader("")
		}
		b, err := io.ReadAll(io.LimitReader(in, maxStdinMessage+1))
		if err != nil {
			return fmt.Errorf("read message: %w", err)
		}
		if len(b) > maxStdinMessage {
			return fmt.Errorf("read message: longer than %d bytes", maxStdinMessage)
		}
		text = strings.TrimSuffix(string(b), "\n")
	}
	if text == "" {
		return usagef("empty message")
	}
	return c.app.inRoom(ctx, args[0], func(ctx context.Context, conn *client.Conn, room subjects.RoomInfo) error {
		var (
			sent client.Sent
			err  error
		)
		if c.ReplyTo != "" {
			sent, err = conn.PublishReply(ctx, room.RoomID, c.ReplyTo, []byte(text))
		} else {
			sent, err = conn.Publish(ctx, room.RoomID, []byte(text))
		}
		if err != nil {
			return fmt.Errorf("send: %w", err)
		}
		printSent(c.app.Stdout, sent)
		return nil
	})
}

// printSent prints a sent message's ID and, when the room stored it, its
// sequence in the room log: "ID SEQ".
func printSent(w io.Writer, s client.Sent) {
	if s.Seq == 0 {
		fmt.Fprintln(w, s.ID)
		return
	}
	fmt.Fprintln(w, s.ID, s.Seq)
}

// checkMessageID returns a usage error unless id looks like a message ID
// (32 bytes, unpadded base64url).
func checkMessageID(id string) error {
	b, err := base64.RawURLEncoding.Strict().DecodeString(id)
	if err != nil || len(b) != 32 {
		return usagef("%q is not a message ID (43 characters, as printed by `unibus send` and `unibus listen`)", id)
	}
	return nil
}

// reactCommand reacts to a message.
type reactCommand struct {
	app *app
}

func newReactCommand(a *app) *cobra.Command {
	c := &reactCommand{app: a}
	return leaf(&cobra.Command{
		Use:   "react ROOM MSGID EMOJI",
		Short: "React to a message",
		Long: `React to message MSGID in ROOM with EMOJI (sealed like any message). Like
send, it returns once the room has stored the reaction and prints the
reaction's ID and its sequence in the room log ("ID SEQ"; only the ID in a
room that keeps no history).`,
		Example: `  unibus react ops Kx3… 👍`,
	}, c)
}

// Run sends the reaction and prints its ID.
func (c *reactCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 3, 3, "ROOM MSGID EMOJI"); err != nil {
		return err
	}
	if err := checkMessageID(args[1]); err != nil {
		return err
	}
	if args[2] == "" {
		return usagef("empty emoji")
	}
	return c.app.inRoom(ctx, args[0], func(ctx context.Context, conn *client.Conn, room subjects.RoomInfo) error {
		sent, err := conn.React(ctx, room.RoomID, args[1], args[2])
		if err != nil {
			return fmt.Errorf("react: %w", err)
		}
		printSent(c.app.Stdout, sent)
		return nil
	})
}
