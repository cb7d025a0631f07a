package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/unibus/unibus/internal/envvar"
)

// runner is one command: tests call Run directly.
type runner interface {
	Run(ctx context.Context, args []string) error
}

// exitCodesHelp ends every command's --help; main.go's exitCode is the
// mapping it describes.
const exitCodesHelp = `
Exit codes:
  0   success
  1   error
  2   usage: unknown command or flag, missing or malformed argument,
      plaintext server URL beyond loopback without --insecure
  3   refused: not registered or revoked, forbidden, bad signature
  4   not found: no such user, room or member
  5   conflict: already exists, or a concurrent change won (retry)
  69  unavailable: server unreachable, service down, or no answer in time
  130 interrupted
`

// newRootCommand builds the command tree over a, whose global options the
// persistent flags fill in; getenv supplies their defaults.
func newRootCommand(a *app, getenv func(string) string) *cobra.Command {
	insecureDefault, insecureEnvErr := envvar.Bool(getenv, envInsecure)
	root := &cobra.Command{
		Use:   "unibus",
		Short: "Command line of the unibus secure message bus",
		Long: `unibus is the command line of the unibus secure message bus: make an
identity, manage users and rooms, send and listen to end-to-end encrypted
messages.

Quick start:
  unibus keygen                      # writes ~/.config/unibus/identity.nk, prints your key
  unibus users add UKEY… --name bob  # an admin registers a user
  unibus whoami                      # connect once: registers your encryption key
  unibus rooms create ops            # prints the room ID
  unibus rooms invite ops UKEY…
  unibus send ops hello              # prints the message ID and its seq
  unibus history ops --last 20
  unibus listen ops --json`,
		Version:           version,
		SilenceErrors:     true, // main prints errors, with hints
		SilenceUsage:      true,
		ValidArgsFunction: cobra.NoFileCompletions,
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			if a.Timeout <= 0 {
				return usagef("--timeout must be positive, got %s", a.Timeout)
			}
			if insecureEnvErr != nil && !c.Flags().Changed("insecure") {
				return usagef("%v", insecureEnvErr)
			}
			return nil
		},
	}
	group(root)
	root.SetIn(a.Stdin)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	root.SetHelpTemplate(root.HelpTemplate() + exitCodesHelp)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{cmd: c.CommandPath(), err: err}
	})

	pf := root.PersistentFlags()
	pf.StringVarP(&a.IdentityFile, "identity", "i", defaultIdentityFile(getenv),
		"identity seed file (env "+envIdentity+")")
	pf.StringVarP(&a.Server, "server", "s", envvar.Or(getenv, envServer, defaultServer),
		"NATS server URL, comma-separated for several (env "+envServer+")")
	pf.StringVar(&a.CA, "ca", getenv(envCA),
		"CA certificate file: require TLS signed by it (env "+envCA+")")
	pf.BoolVar(&a.Insecure, "insecure", insecureDefault,
		"allow a plaintext (nats://) server URL beyond loopback: anyone on the path can read and rewrite it (env "+envInsecure+"=1)")
	pf.DurationVar(&a.Timeout, "timeout", defaultTimeout, "bound on connecting and on each request")
	_ = root.MarkPersistentFlagFilename("identity")
	_ = root.MarkPersistentFlagFilename("ca", "pem", "crt")

	root.AddCommand(
		newKeygenCommand(a),
		newWhoamiCommand(a),
		newUsersCommand(a),
		newRoomsCommand(a),
		newSendCommand(a),
		newReactCommand(a),
		newListenCommand(a),
		newHistoryCommand(a),
		newBlobCommand(a),
		newChatCommand(a),
		newSignCommand(a),
	)
	return root
}

// group makes cmd a command group: without a subcommand it prints its
// help; an unknown subcommand is a usage error (cobra would print help).
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf(" (did you mean %q?)", strings.Join(s, `" or "`))
		}
		return &usageError{cmd: c.CommandPath(), err: errors.New(msg)}
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	return cmd
}

// leaf makes a command that runs r.
func leaf(cmd *cobra.Command, r runner) *cobra.Command {
	if cmd.ValidArgsFunction == nil {
		cmd.ValidArgsFunction = cobra.NoFileCompletions
	}
	cmd.RunE = func(c *cobra.Command, args []string) error {
		err := r.Run(c.Context(), args)
		if ue := (*usageError)(nil); errors.As(err, &ue) && ue.cmd == "" {
			ue.cmd = c.CommandPath()
		}
		return err
	}
	return cmd
}

// checkArgs returns a usage error unless min <= len(args) <= max (max < 0:
// no upper bound); want names the arguments, "ROOM PUB".
func checkArgs(args []string, minArgs, maxArgs int, want string) error {
	n := len(args)
	if n >= minArgs && (maxArgs < 0 || n <= maxArgs) {
		return nil
	}
	if n < minArgs {
		return usagef("missing arguments: want %s, got %d argument%s", want, n, plural(n))
	}
	return usagef("too many arguments: want %s, got %d: unexpected %q", want, n, args[maxArgs])
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
