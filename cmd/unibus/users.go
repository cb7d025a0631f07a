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

func newUsersCommand(a *app) *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "users",
		Short: "Register, list and revoke users (admins)",
		Long: `Manage the allowlist of identities admitted to the bus. Adding, listing and
revoking users is for admins.`,
	})
	cmd.AddCommand(newUsersAddCommand(a), newUsersListCommand(a), newUsersRevokeCommand(a))
	return cmd
}

// parsePub normalizes a user public key argument; a bad one is a usage
// error.
func parsePub(arg string) (string, error) {
	pub, err := subjects.NormalizeUserKey(arg)
	if err != nil {
		return "", &usageError{err: err}
	}
	return pub, nil
}

// usersAddCommand registers a user.
type usersAddCommand struct {
	app   *app
	Name  string
	Admin bool
}

func newUsersAddCommand(a *app) *cobra.Command {
	c := &usersAddCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "add PUB [--name NAME] [--admin]",
		Short: "Register a user by public key (admins)",
		Long: `Register the identity whose public key (U…) is PUB, so that it may connect.
The user prints its key with ` + "`unibus keygen`" + ` or ` + "`unibus whoami --offline`" + `.`,
	}, c)
	cmd.Flags().StringVarP(&c.Name, "name", "n", "", "display name")
	cmd.Flags().BoolVar(&c.Admin, "admin", false, "make the user an admin")
	return cmd
}

// Run adds the user.
func (c *usersAddCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 1, 1, "PUB"); err != nil {
		return err
	}
	pub, err := parsePub(args[0])
	if err != nil {
		return err
	}
	return c.app.sessionWithoutKey(ctx, func(ctx context.Context, conn *client.Conn) error {
		u, err := conn.AddUser(ctx, pub, c.Name, c.Admin)
		if err != nil {
			return fmt.Errorf("add user: %w", err)
		}
		role := "user"
		if u.Admin {
			role = "admin"
		}
		fmt.Fprintf(c.app.Stdout, "added %s %s %s\n", role, u.Pub, cleanLine(u.Name))
		return nil
	})
}

// usersListCommand lists every user.
type usersListCommand struct {
	app  *app
	JSON bool
}

func newUsersListCommand(a *app) *cobra.Command {
	c := &usersListCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "list [--json]",
		Short: "List every user, revoked ones included (admins)",
	}, c)
	cmd.Flags().BoolVar(&c.JSON, "json", false, "print a JSON array")
	return cmd
}

// userJSON is a user in `users list --json`.
type userJSON struct {
	Pub       string     `json:"pub"`
	Name      string     `json:"name"`
	Admin     bool       `json:"admin"`
	EncKey    bool       `json:"enc_key"` // an encryption key is registered
	AddedAt   time.Time  `json:"added_at"`
	Revoked   bool       `json:"revoked"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Run lists the users.
func (c *usersListCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	return c.app.sessionWithoutKey(ctx, func(ctx context.Context, conn *client.Conn) error {
		users, err := conn.ListUsers(ctx)
		if err != nil {
			return fmt.Errorf("list users: %w", err)
		}
		if c.JSON {
			out := make([]userJSON, 0, len(users))
			for _, u := range users {
				out = append(out, userJSON{Pub: u.Pub, Name: u.Name, Admin: u.Admin, EncKey: len(u.EncKey) > 0,
					AddedAt: u.AddedAt, Revoked: u.Revoked, RevokedAt: u.RevokedAt})
			}
			return writeJSON(c.app.Stdout, out)
		}
		tw := tabwriter.NewWriter(c.app.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PUB\tNAME\tADMIN\tENC KEY\tADDED\tREVOKED")
		for _, u := range users {
			revoked := "-"
			if u.Revoked {
				revoked = "yes"
				if u.RevokedAt != nil {
					revoked = u.RevokedAt.Local().Format(time.DateTime)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Pub, cleanLine(u.Name), yesNo(u.Admin), yesNo(len(u.EncKey) > 0),
				u.AddedAt.Local().Format(time.DateTime), revoked)
		}
		return tw.Flush()
	})
}

// usersRevokeCommand revokes a user.
type usersRevokeCommand struct {
	app *app
}

func newUsersRevokeCommand(a *app) *cobra.Command {
	c := &usersRevokeCommand{app: a}
	return leaf(&cobra.Command{
		Use:   "revoke PUB",
		Short: "Revoke a user; its connections are closed (admins)",
	}, c)
}

// Run revokes the user.
func (c *usersRevokeCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 1, 1, "PUB"); err != nil {
		return err
	}
	pub, err := parsePub(args[0])
	if err != nil {
		return err
	}
	return c.app.sessionWithoutKey(ctx, func(ctx context.Context, conn *client.Conn) error {
		u, err := conn.RevokeUser(ctx, pub)
		if err != nil {
			return fmt.Errorf("revoke user: %w", err)
		}
		fmt.Fprintf(c.app.Stdout, "revoked %s %s\n", u.Pub, cleanLine(u.Name))
		return nil
	})
}
