package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/internal/exitcode"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(report(os.Stderr, err))
}

// run executes one command line and closes the connection it opened.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	a := &app{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	root := newRootCommand(a, getenv)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if cerr := a.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// report prints err with a hint, if there is one, and returns the exit
// code.
func report(w io.Writer, err error) int {
	code := exitcode.Of(err)
	if err == nil {
		return code
	}
	if code == exitcode.Interrupted {
		fmt.Fprintln(w, "unibus: interrupted")
		return code
	}
	fmt.Fprintln(w, "unibus:", err)
	if h := hint(err); h != "" {
		fmt.Fprintln(w, "hint:", h)
	}
	return code
}

// hint suggests what to do about err, or returns "".
func hint(err error) string {
	var (
		ue  *usageError
		na  *notAdmittedError
		ide *identityError
	)
	switch {
	case errors.As(err, &ue):
		cmd := ue.cmd
		if cmd == "" {
			cmd = "unibus"
		}
		return fmt.Sprintf("run `%s --help` for usage", cmd)
	case errors.Is(err, certs.ErrPlaintextURL):
		return "--ca pins TLS: give a tls:// server URL (--server or UNIBUS_SERVER)"
	case errors.Is(err, client.ErrInsecureURL):
		return "give a tls:// server URL (--server or UNIBUS_SERVER, with --ca to pin its CA), " +
			"or pass --insecure (or set UNIBUS_INSECURE=1) to allow plaintext on a network you trust"
	case errors.As(err, &na):
		return fmt.Sprintf("%s is not registered, or was revoked: ask an admin to run `unibus users add %s`", na.pub, na.pub)
	case errors.As(err, &ide) && errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("no identity at %s: create one with `unibus keygen`, or point --identity (or UNIBUS_IDENTITY) at yours", ide.path)
	case errors.As(err, &ide):
		return "check the --identity file (or UNIBUS_IDENTITY): it must hold an nkey user seed (SU…)"
	case errors.Is(err, client.ErrEncryptionKeyLost):
		return "restore your encryption key file (FILE.enc beside --identity) from a backup; or run `unibus whoami --replace-encryption-key`, after which room owners must invite you again"
	case errors.Is(err, client.ErrUnauthenticated):
		return "the services refused your signed request: check this machine's clock, and that you are still registered (`unibus whoami`)"
	case exitcode.IsBadCertificate(err):
		return "the server's certificate is not trusted: pass the CA that signed it with --ca (or UNIBUS_CA)"
	case errors.Is(err, client.ErrConnect) && exitcode.Of(err) == exitcode.Unavailable:
		return "is unibusd running? try `make run` (or check --server / UNIBUS_SERVER)"
	case errors.Is(err, client.ErrUnavailable):
		return "the unibus services are not answering: is unibusd running? try `make run`"
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within --timeout: is the server overloaded or unreachable?"
	}
	return ""
}
