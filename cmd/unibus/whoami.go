package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/unibus/unibus/client"
)

// whoamiCommand prints the caller's public key and, from the users
// service, its registration; connecting also registers its encryption key,
// so that room owners can invite it.
type whoamiCommand struct {
	app *app
	// Offline prints only the public key, without connecting.
	Offline bool
	// ReplaceKey makes and registers a new encryption key when the key
	// file is gone (client.ReplaceEncryptionKey).
	ReplaceKey bool
}

func newWhoamiCommand(a *app) *cobra.Command {
	c := &whoamiCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "whoami [--offline]",
		Short: "Show your public key and registration",
		Long: `Show your public key (from the --identity file) and what the users service
knows about you: name, admin, encryption key. Connecting also registers your
encryption key (kept beside the identity file as FILE.enc, created on first
use), which room owners need before they can invite you.

With --offline, print only the public key, without connecting.

If FILE.enc is lost while a key is registered, every command refuses to
make a new one silently: restore the file from a backup, or run
--replace-encryption-key, after which room owners must invite you again.`,
	}, c)
	cmd.Flags().BoolVar(&c.Offline, "offline", false, "print only the public key; do not connect")
	cmd.Flags().BoolVar(&c.ReplaceKey, "replace-encryption-key", false, "make and register a new encryption key (the key file must be gone); your room keys must then be sealed to you again")
	return cmd
}

// Run prints the identity and its user record.
func (c *whoamiCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	id, err := c.app.identity()
	if err != nil {
		return err
	}
	if c.Offline {
		fmt.Fprintln(c.app.Stdout, id.PublicKey())
		return nil
	}
	session := c.app.session
	if c.ReplaceKey {
		session = c.app.sessionWithoutKey
	}
	return session(ctx, func(ctx context.Context, conn *client.Conn) error {
		if c.ReplaceKey {
			if err := conn.ReplaceEncryptionKey(ctx, client.EncryptionKeyPath(c.app.IdentityFile)); err != nil {
				return err
			}
			c.app.withKey = true
		}
		u, err := conn.GetUser(ctx, id.PublicKey())
		if err != nil {
			return fmt.Errorf("get user: %w", err)
		}
		tw := tabwriter.NewWriter(c.app.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "public key:\t%s\n", u.Pub)
		fmt.Fprintf(tw, "name:\t%s\n", clean(u.Name))
		fmt.Fprintf(tw, "admin:\t%s\n", yesNo(u.Admin))
		fmt.Fprintf(tw, "encryption key:\t%s\n", client.EncryptionKeyPath(c.app.IdentityFile))
		fmt.Fprintf(tw, "identity:\t%s\n", c.app.IdentityFile)
		fmt.Fprintf(tw, "server:\t%s\n", c.app.Server)
		return tw.Flush()
	})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
