package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/unibus/unibus/identity"
)

// keygenCommand writes a new identity seed file. It needs no server.
type keygenCommand struct {
	app *app
	// Out is the seed file to write; empty means the --identity file.
	Out string
}

func newKeygenCommand(a *app) *cobra.Command {
	c := &keygenCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "keygen [--out FILE]",
		Short: "Write a new identity and print its public key",
		Long: `Write a new identity (an nkey user seed, SU…) to FILE with mode 0600 and
print its public key (U…), the key an admin registers with
` + "`unibus users add`" + `. FILE defaults to the --identity file. An existing
file is never overwritten. The seed file also works with ` + "`nats --nkey`" + `.`,
	}, c)
	cmd.Flags().StringVarP(&c.Out, "out", "o", "", "seed file to write (default: the --identity file)")
	_ = cmd.MarkFlagFilename("out")
	return cmd
}

// Run generates and saves the identity and prints its public key.
func (c *keygenCommand) Run(_ context.Context, args []string) error {
	if err := checkArgs(args, 0, 0, "no arguments"); err != nil {
		return err
	}
	out := c.Out
	if out == "" {
		out = c.app.IdentityFile
	}
	if out == "" {
		return usagef("no file to write: pass --out FILE")
	}
	id, err := identity.Generate()
	if err != nil {
		return fmt.Errorf("generate identity: %w", err)
	}
	defer id.Wipe()
	if err := identity.Save(out, id); err != nil {
		if errors.Is(err, identity.ErrExists) {
			return fmt.Errorf("%s exists: %w; keygen never overwrites one (use --out for another file)", out, identity.ErrExists)
		}
		return err
	}
	fmt.Fprintln(c.app.Stdout, id.PublicKey())
	fmt.Fprintf(c.app.Stderr, "wrote identity %s (keep it secret)\nnext: ask an admin to run `unibus users add %s`\n", out, id.PublicKey())
	return nil
}
