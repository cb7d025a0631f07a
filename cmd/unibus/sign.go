package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/unibus/unibus/subjects"
)

// signCommand prints the headers that sign one control-plane request, so
// that tools which speak NATS but not unibus, the nats CLI first, can call
// the services: the signature covers the subject, the body, a timestamp
// and a fresh nonce, so each request needs its own.
type signCommand struct {
	app *app
	// JSON prints the headers as a JSON object instead of nats CLI flags.
	JSON bool
	// now is the signing time; nil means time.Now.
	now func() time.Time
}

func newSignCommand(a *app) *cobra.Command {
	c := &signCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "sign SUBJECT [BODY|-]",
		Short: "Print the headers that sign one request, for nats req",
		Long: `Sign one control-plane request with your identity and print its headers
(Unibus-Pub, Unibus-Ts, Unibus-Nonce, Unibus-Sig) as -H flags of the nats CLI.
BODY is the exact request body ('' or none for an empty one; - reads it from
standard input). The signature is good for one request, within the services'
clock skew (2 minutes by default): sign again for the next.

  nats --nkey admin.nk --inbox-prefix _INBOX.$(unibus -i admin.nk whoami --offline) \
    req unibus.v1.users.list '{"limit":2}' \
    $(unibus -i admin.nk sign unibus.v1.users.list '{"limit":2}')

With --json, print the headers as a JSON object instead.`,
	}, c)
	cmd.Flags().BoolVar(&c.JSON, "json", false, "print the headers as a JSON object")
	return cmd
}

// Run signs the request and prints its headers.
func (c *signCommand) Run(_ context.Context, args []string) error {
	if err := checkArgs(args, 1, 2, "SUBJECT and an optional BODY"); err != nil {
		return err
	}
	subject := args[0]
	if err := validSubject(subject); err != nil {
		return usagef("subject %q: %v", subject, err)
	}
	var body []byte
	if len(args) == 2 {
		body = []byte(args[1])
		if args[1] == "-" {
			b, err := io.ReadAll(c.app.Stdin)
			if err != nil {
				return fmt.Errorf("read the body from standard input: %w", err)
			}
			body = b
		}
	}
	id, err := c.app.identity()
	if err != nil {
		return err
	}
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	h, err := subjects.SignRequest(id.KeyPair(), subject, body, now())
	if err != nil {
		return err
	}
	names := []string{subjects.HeaderPub, subjects.HeaderTs, subjects.HeaderNonce, subjects.HeaderSig}
	if c.JSON {
		out := make(map[string]string, len(names))
		for _, n := range names {
			out[n] = h.Get(n)
		}
		enc := json.NewEncoder(c.app.Stdout)
		return enc.Encode(out)
	}
	flags := make([]string, 0, 2*len(names))
	for _, n := range names {
		flags = append(flags, "-H", n+":"+h.Get(n))
	}
	_, err = fmt.Fprintln(c.app.Stdout, strings.Join(flags, " "))
	return err
}

// validSubject checks that s is a subject one may publish to: dot-separated
// tokens, none empty, no wildcard and no whitespace.
func validSubject(s string) error {
	for tok := range strings.SplitSeq(s, ".") {
		if err := subjects.ValidateToken(tok); err != nil {
			return err
		}
	}
	return nil
}
