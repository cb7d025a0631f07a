package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/subjects"
)

func newRoomsCommand(a *app) *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "rooms",
		Short: "Create rooms, list yours, manage members and keys",
		Long: `Manage rooms. ROOM is a room ID or the name of one of your rooms (of one
of your invitations, for accept and decline).

Rooms are end-to-end encrypted unless created with --cleartext: room keys are
made and sealed on the clients, and the servers only ever see ciphertext.
Only a room's owner may invite, remove and rekey. An invitation is a
proposal: the invitee is a member only once it accepts it, and until then
the room is not among its rooms.`,
	})
	cmd.AddCommand(
		newRoomsCreateCommand(a),
		newRoomsListCommand(a),
		newRoomsInviteCommand(a),
		newRoomsInvitationsCommand(a),
		newRoomsAcceptCommand(a),
		newRoomsDeclineCommand(a),
		newRoomsRemoveCommand(a),
		newRoomsMembersCommand(a),
		newRoomsRekeyCommand(a),
		newRoomsLeaveCommand(a),
	)
	return cmd
}

// roomsCreateCommand creates a room.
type roomsCreateCommand struct {
	app       *app
	Cleartext bool
	// History is the room's history policy: subjects.HistoryKeep or
	// subjects.HistoryNone.
	History string
	// HistoryMaxAge, when positive, keeps the frames that long at most.
	HistoryMaxAge time.Duration
}

func newRoomsCreateCommand(a *app) *cobra.Command {
	c := &roomsCreateCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "create NAME [--cleartext] [--history keep|none] [--history-max-age D]",
		Short: "Create a room you own and print its ID",
		Long: `Create a room named NAME, owned by you, and print its ID. It is end-to-end
encrypted unless --cleartext is given (signed but readable by the servers;
a deployment may refuse such rooms).

The room keeps a durable log of its frames (sealed, in an encrypted room)
unless created with --history none: members read it back (unibus history,
listen --last/--since/--from, the chat's scrollback) from their invitation
on, and subscriptions resume after a disconnection with nothing lost. With
--history none only the members subscribed when a message is sent see it.
--history-max-age keeps frames for less time than the deployment does.`,
		Example: `  unibus rooms create ops
  unibus rooms create alerts --history-max-age 168h
  unibus rooms create scratch --history none`,
	}, c)
	cmd.Flags().BoolVar(&c.Cleartext, "cleartext", false, "signed frames, not encrypted")
	cmd.Flags().StringVar(&c.History, "history", subjects.HistoryKeep, "history policy: keep (a durable log of the room's frames) or none")
	cmd.Flags().DurationVar(&c.HistoryMaxAge, "history-max-age", 0, "with --history keep, keep frames this long at most (0: as the deployment does)")
	return cmd
}

// Run creates the room and prints its ID.
func (c *roomsCreateCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 1, 1, "NAME"); err != nil {
		return err
	}
	var opts []client.RoomOption
	switch c.History {
	case "", subjects.HistoryKeep:
	case subjects.HistoryNone:
		opts = append(opts, client.WithHistory(subjects.HistoryNone))
	default:
		return usagef("--history %q: want %s or %s", c.History, subjects.HistoryKeep, subjects.HistoryNone)
	}
	switch {
	case c.HistoryMaxAge < 0:
		return usagef("--history-max-age must not be negative, got %s", c.HistoryMaxAge)
	case c.HistoryMaxAge > 0 && c.History == subjects.HistoryNone:
		return usagef("--history-max-age needs --history %s", subjects.HistoryKeep)
	case c.HistoryMaxAge > 0:
		opts = append(opts, client.WithHistoryMaxAge(c.HistoryMaxAge))
	}
	ctx, cancel := c.app.bounded(ctx)
	defer cancel()
	mode, connect := subjects.ModeE2E, c.app.connectWithKey
	if c.Cleartext {
		mode, connect = subjects.ModeCleartext, c.app.connect
	}
	conn, err := connect(ctx)
	if err != nil {
		return err
	}
	info, err := conn.CreateRoom(ctx, args[0], mode, opts...)
	if err != nil {
		return fmt.Errorf("create room: %w", err)
	}
	fmt.Fprintln(c.app.Stdout, info.RoomID)
	fmt.Fprintf(c.app.Stderr, "created %s room %q (%s); invite with `unibus rooms invite %s PUB`\n",
		modeName(info.Mode), cleanLine(info.Name), info.RoomID, info.RoomID)
	return nil
}

func modeName(mode string) string {
	if mode == subjects.ModeE2E {
		return "encrypted"
	}
	return mode
}

// roomsListCommand lists the caller's rooms.
type roomsListCommand struct {
	app  *app
	JSON bool
}

func newRoomsListCommand(a *app) *cobra.Command {
	c := &roomsListCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "list [--json]",
		Short: "List the rooms you belong to",
	}, c)
	cmd.Flags().BoolVar(&c.JSON, "json", false, "print a JSON array")
	return cmd
}

// roomJSON is a room in `rooms list --json`.
type roomJSON struct {
	RoomID  string `json:"room_id"`
	Name    string `json:"name"`
	Mode    string `json:"mode"`
	Role    string `json:"role"`
	Epoch   uint64 `json:"epoch"`
	Owner   string `json:"owner"`
	History string `json:"history"`
}

// Run lists the rooms, with their names.
func (c *roomsListCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	return c.app.session(ctx, func(ctx context.Context, conn *client.Conn) error {
		refs, err := conn.ListMyRooms(ctx)
		if err != nil {
			return fmt.Errorf("list rooms: %w", err)
		}
		rooms := make([]roomJSON, 0, len(refs))
		for _, r := range refs {
			rooms = append(rooms, roomJSON{
				RoomID: r.RoomID, Name: r.Name, Owner: r.Owner, Mode: r.Mode,
				Role: r.Role, Epoch: r.Epoch, History: r.History,
			})
		}
		if c.JSON {
			return writeJSON(c.app.Stdout, rooms)
		}
		tw := tabwriter.NewWriter(c.app.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROOM\tNAME\tMODE\tHISTORY\tROLE\tEPOCH")
		for _, r := range rooms {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", r.RoomID, cleanLine(r.Name), modeName(r.Mode), cleanLine(r.History), r.Role, r.Epoch)
		}
		return tw.Flush()
	})
}

// roomsInviteCommand invites a user to a room the caller owns.
type roomsInviteCommand struct {
	app *app
}

func newRoomsInviteCommand(a *app) *cobra.Command {
	c := &roomsInviteCommand{app: a}
	return leaf(&cobra.Command{
		Use:   "invite ROOM PUB",
		Short: "Invite a user to a room you own (it accepts to join)",
		Long: `Invite the user PUB to ROOM, which you own. The invitation is a proposal:
PUB becomes a member when it accepts (` + "`unibus rooms accept ROOM`" + `), may
decline, and the invitation lapses unanswered after seven days; until then
it grants PUB nothing. ` + "`unibus rooms remove ROOM PUB`" + ` withdraws it. In an
encrypted room the current room key is sealed to the invitee's encryption
key, which it registers by connecting once (for example with
` + "`unibus whoami`" + `).`,
	}, c)
}

// Run invites the member.
func (c *roomsInviteCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 2, 2, "ROOM PUB"); err != nil {
		return err
	}
	pub, err := parsePub(args[1])
	if err != nil {
		return err
	}
	return c.app.inRoom(ctx, args[0], func(ctx context.Context, conn *client.Conn, room subjects.RoomInfo) error {
		if room.Mode == subjects.ModeE2E {
			u, err := conn.GetUser(ctx, pub)
			if err != nil {
				return fmt.Errorf("invite %s: %w", pub, err)
			}
			if len(u.EncKey) == 0 {
				return fmt.Errorf("invite %s: %w: no encryption key registered yet, so the room key cannot be sealed to them; "+
					"ask them to run `unibus whoami` once, then invite again", pub, client.ErrForbidden)
			}
		}
		if _, err := conn.Invite(ctx, room.RoomID, pub); err != nil {
			return fmt.Errorf("invite %s: %w", pub, err)
		}
		fmt.Fprintf(c.app.Stdout, "invited %s to %q (%s); they must accept: `unibus rooms accept %s`\n", pub, cleanLine(room.Name), room.RoomID, room.RoomID)
		return nil
	})
}

// roomsInvitationsCommand lists the caller's pending invitations.
type roomsInvitationsCommand struct {
	app  *app
	JSON bool
}

func newRoomsInvitationsCommand(a *app) *cobra.Command {
	c := &roomsInvitationsCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "invitations [--json]",
		Short: "List your pending invitations",
		Long: `List the rooms you are invited to and have not answered yet: accept one with
` + "`unibus rooms accept ROOM`" + ` or decline it with ` + "`unibus rooms decline ROOM`" + `. A
room's name is its owner's choice: check the owner.`,
	}, c)
	cmd.Flags().BoolVar(&c.JSON, "json", false, "print a JSON array")
	return cmd
}

// invitationJSON is an invitation in `rooms invitations --json`.
type invitationJSON struct {
	RoomID    string    `json:"room_id"`
	Name      string    `json:"name"`
	Mode      string    `json:"mode"`
	Owner     string    `json:"owner"`
	Epoch     uint64    `json:"epoch"`
	InvitedAt time.Time `json:"invited_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Run lists the invitations.
func (c *roomsInvitationsCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	return c.app.session(ctx, func(ctx context.Context, conn *client.Conn) error {
		invs, err := conn.Invitations(ctx)
		if err != nil {
			return fmt.Errorf("list invitations: %w", err)
		}
		out := make([]invitationJSON, 0, len(invs))
		for _, inv := range invs {
			out = append(out, invitationJSON{
				RoomID: inv.RoomID, Name: inv.Name, Mode: inv.Mode, Owner: inv.Owner,
				Epoch: inv.Epoch, InvitedAt: inv.InvitedAt, ExpiresAt: inv.ExpiresAt,
			})
		}
		if c.JSON {
			return writeJSON(c.app.Stdout, out)
		}
		tw := tabwriter.NewWriter(c.app.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROOM\tNAME\tMODE\tOWNER\tEXPIRES")
		for _, inv := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", inv.RoomID, cleanLine(inv.Name), modeName(inv.Mode), inv.Owner, inv.ExpiresAt.Local().Format(time.DateTime))
		}
		return tw.Flush()
	})
}

// roomsAcceptCommand accepts an invitation.
type roomsAcceptCommand struct {
	app *app
}

func newRoomsAcceptCommand(a *app) *cobra.Command {
	c := &roomsAcceptCommand{app: a}
	return leaf(&cobra.Command{
		Use:   "accept ROOM",
		Short: "Accept an invitation: join the room",
		Long: `Accept your pending invitation to ROOM (the name or ID of one of your
invitations; see ` + "`unibus rooms invitations`" + `): you become a member. A name that
several invitations (or one's name and another's ID) share is refused with
their IDs: give the ID.`,
	}, c)
}

// Run accepts the invitation.
func (c *roomsAcceptCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 1, 1, "ROOM"); err != nil {
		return err
	}
	return c.app.session(ctx, func(ctx context.Context, conn *client.Conn) error {
		inv, err := resolveInvitation(ctx, conn, args[0])
		if err != nil {
			return err
		}
		info, err := conn.Accept(ctx, inv.RoomID)
		if err != nil {
			return fmt.Errorf("accept: %w", err)
		}
		fmt.Fprintf(c.app.Stdout, "joined %q (%s), owned by %s\n", cleanLine(info.Name), info.RoomID, info.Owner)
		return nil
	})
}

// roomsDeclineCommand declines an invitation.
type roomsDeclineCommand struct {
	app *app
}

func newRoomsDeclineCommand(a *app) *cobra.Command {
	c := &roomsDeclineCommand{app: a}
	return leaf(&cobra.Command{
		Use:   "decline ROOM",
		Short: "Decline an invitation",
		Long: `Decline your pending invitation to ROOM (the name or ID of one of your
invitations; see ` + "`unibus rooms invitations`" + `): it is removed.`,
	}, c)
}

// Run declines the invitation.
func (c *roomsDeclineCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 1, 1, "ROOM"); err != nil {
		return err
	}
	return c.app.session(ctx, func(ctx context.Context, conn *client.Conn) error {
		inv, err := resolveInvitation(ctx, conn, args[0])
		if err != nil {
			return err
		}
		if _, err := conn.Decline(ctx, inv.RoomID); err != nil {
			return fmt.Errorf("decline: %w", err)
		}
		fmt.Fprintf(c.app.Stdout, "declined %q (%s) of %s\n", cleanLine(inv.Name), inv.RoomID, inv.Owner)
		return nil
	})
}

// roomsRemoveCommand removes a member from a room the caller owns.
type roomsRemoveCommand struct {
	app *app
}

func newRoomsRemoveCommand(a *app) *cobra.Command {
	c := &roomsRemoveCommand{app: a}
	return leaf(&cobra.Command{
		Use:   "remove ROOM PUB",
		Short: "Remove a member from a room you own, or withdraw an invitation (and rekey it)",
		Long: `Remove the user PUB from ROOM, which you own, or withdraw PUB's pending
invitation. An encrypted room is rekeyed in the same request: the removed
member cannot read what follows.`,
	}, c)
}

// Run removes the member.
func (c *roomsRemoveCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 2, 2, "ROOM PUB"); err != nil {
		return err
	}
	pub, err := parsePub(args[1])
	if err != nil {
		return err
	}
	return c.app.inRoom(ctx, args[0], func(ctx context.Context, conn *client.Conn, room subjects.RoomInfo) error {
		info, err := conn.Remove(ctx, room.RoomID, pub)
		if err != nil {
			return fmt.Errorf("remove %s: %w", pub, err)
		}
		fmt.Fprintf(c.app.Stdout, "removed %s from %q (%s), epoch %d\n", pub, cleanLine(info.Name), info.RoomID, info.Epoch)
		return nil
	})
}

// roomsMembersCommand lists a room's members.
type roomsMembersCommand struct {
	app  *app
	JSON bool
}

func newRoomsMembersCommand(a *app) *cobra.Command {
	c := &roomsMembersCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "members ROOM [--json]",
		Short: "List the members of a room you belong to",
	}, c)
	cmd.Flags().BoolVar(&c.JSON, "json", false, "print a JSON array")
	return cmd
}

// memberJSON is a member in `rooms members --json`.
type memberJSON struct {
	Pub         string `json:"pub"`
	Role        string `json:"role"`
	JoinedEpoch uint64 `json:"joined_epoch"`
	EncKey      bool   `json:"enc_key"` // an encryption key is registered
}

// Run lists the members.
func (c *roomsMembersCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 1, 1, "ROOM"); err != nil {
		return err
	}
	return c.app.inRoom(ctx, args[0], func(ctx context.Context, conn *client.Conn, room subjects.RoomInfo) error {
		members, err := conn.Members(ctx, room.RoomID)
		if err != nil {
			return fmt.Errorf("list members: %w", err)
		}
		out := make([]memberJSON, 0, len(members))
		for _, m := range members {
			out = append(out, memberJSON{Pub: m.Pub, Role: m.Role, JoinedEpoch: m.JoinedEpoch, EncKey: len(m.EncKey) > 0})
		}
		if c.JSON {
			return writeJSON(c.app.Stdout, out)
		}
		tw := tabwriter.NewWriter(c.app.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PUB\tROLE\tJOINED EPOCH")
		for _, m := range out {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", m.Pub, m.Role, m.JoinedEpoch)
		}
		return tw.Flush()
	})
}

// roomsRekeyCommand starts a new key epoch in a room the caller owns.
type roomsRekeyCommand struct {
	app *app
}

func newRoomsRekeyCommand(a *app) *cobra.Command {
	c := &roomsRekeyCommand{app: a}
	return leaf(&cobra.Command{
		Use:   "rekey ROOM",
		Short: "Give an encrypted room you own a fresh key",
		Long: `Start a new key epoch in ROOM, an encrypted room you own: a fresh room key is
sealed to every member. A concurrent change makes it fail with exit code 5;
run it again.`,
	}, c)
}

// Run rekeys the room.
func (c *roomsRekeyCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 1, 1, "ROOM"); err != nil {
		return err
	}
	return c.app.inRoom(ctx, args[0], func(ctx context.Context, conn *client.Conn, room subjects.RoomInfo) error {
		info, err := conn.Rekey(ctx, room.RoomID)
		if err != nil {
			return fmt.Errorf("rekey: %w", err)
		}
		fmt.Fprintf(c.app.Stdout, "rekeyed %q (%s): epoch %d\n", cleanLine(info.Name), info.RoomID, info.Epoch)
		return nil
	})
}

// roomsLeaveCommand leaves a room.
type roomsLeaveCommand struct {
	app *app
}

func newRoomsLeaveCommand(a *app) *cobra.Command {
	c := &roomsLeaveCommand{app: a}
	return leaf(&cobra.Command{
		Use:   "leave ROOM",
		Short: "Leave a room (its owner cannot)",
	}, c)
}

// Run leaves the room.
func (c *roomsLeaveCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 1, 1, "ROOM"); err != nil {
		return err
	}
	return c.app.inRoom(ctx, args[0], func(ctx context.Context, conn *client.Conn, room subjects.RoomInfo) error {
		if err := conn.Leave(ctx, room.RoomID); err != nil {
			return fmt.Errorf("leave: %w", err)
		}
		fmt.Fprintf(c.app.Stdout, "left %q (%s)\n", cleanLine(room.Name), room.RoomID)
		return nil
	})
}
