package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/subjects"
)

func newBlobCommand(a *app) *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "blob",
		Short: "Store and fetch files in a room",
		Long: `Store files too large for a message in a room, and fetch them. In an
encrypted room a file is sealed on this machine before it is stored; every
blob is checked against its ID (a SHA-256) when it is fetched.

Share a blob by sending the JSON line that "blob put" prints.`,
	})
	cmd.AddCommand(newBlobPutCommand(a), newBlobGetCommand(a))
	return cmd
}

// blobPutCommand stores a file in a room.
type blobPutCommand struct {
	app *app
	// Quiet suppresses the progress bar.
	Quiet bool
}

func newBlobPutCommand(a *app) *cobra.Command {
	c := &blobPutCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "put ROOM FILE [--quiet]",
		Short: "Store a file in a room and print its blob ID and reference",
		Long: `Store FILE ("-" reads standard input) in ROOM, a room ID or the name of one
of your rooms. Print two lines: the blob ID, and the blob's reference as one
JSON object, which members of the room give to "unibus blob get" (or send
as a message for a program to fetch):

  {"room_id":"…","blob":"…","epoch":1,"size":1048576}

A progress bar is drawn on standard error when it is a terminal, unless
--quiet.`,
		Example: `  unibus blob put ops report.pdf
  tar cz logs | unibus blob put ops -`,
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 1 {
				return nil, cobra.ShellCompDirectiveDefault // FILE
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
	}, c)
	cmd.Flags().BoolVarP(&c.Quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

// Run uploads the file and prints the blob ID and its JSON reference.
func (c *blobPutCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 2, 2, "ROOM FILE"); err != nil {
		return err
	}
	// The file first: a typo in its name should not cost a connection.
	var src io.Reader
	if args[1] == "-" {
		src = c.app.Stdin
		if src == nil {
			src = strings.NewReader("")
		}
	} else {
		f, err := os.Open(args[1])
		if err != nil {
			return fmt.Errorf("open file: %w", err)
		}
		defer f.Close()
		if info, err := f.Stat(); err != nil {
			return fmt.Errorf("open file: %w", err)
		} else if info.IsDir() {
			return usagef("%s is a directory, not a file", args[1])
		}
		src = f
	}
	conn, room, err := c.app.blobRoom(ctx, args[0])
	if err != nil {
		return err
	}
	// No overall deadline: a large upload takes what it takes; each
	// request has the client's own bound.
	bar := c.app.progressBar(c.Quiet)
	ref, err := conn.PutBlob(ctx, room.RoomID, src, bar.update)
	bar.finish()
	if err != nil {
		return fmt.Errorf("blob put: %w", err)
	}
	b, err := json.Marshal(ref)
	if err != nil {
		return fmt.Errorf("blob put: %w", err)
	}
	fmt.Fprintf(c.app.Stdout, "%s\n%s\n", ref.Blob, b)
	return nil
}

// blobGetCommand fetches a blob of a room.
type blobGetCommand struct {
	app *app
	// Output is the file to write; empty or "-" for standard output.
	Output string
	// Force allows overwriting Output.
	Force bool
	// Quiet suppresses the progress bar.
	Quiet bool
}

func newBlobGetCommand(a *app) *cobra.Command {
	c := &blobGetCommand{app: a}
	cmd := leaf(&cobra.Command{
		Use:   "get ROOM BLOBID [-o FILE] [--force] [--quiet]",
		Short: "Fetch a blob of a room",
		Long: `Fetch blob BLOBID (as printed by "unibus blob put") of ROOM, a room ID or
the name of one of your rooms, to standard output or, with -o, to FILE.

An existing FILE is not overwritten without --force. The blob is checked
against its ID, and in an encrypted room authenticated with the room key,
before any of it reaches FILE or standard output: it is downloaded to a
temporary file first. When a check fails nothing is written and an
existing FILE is left as it was. Standard output that is a terminal is
refused unless -o - asks for it.

A progress bar is drawn on standard error when it is a terminal, unless
--quiet.`,
		Example: `  unibus blob get ops 3f9a… -o report.pdf
  unibus blob get ops 3f9a… | tar xz`,
	}, c)
	cmd.Flags().StringVarP(&c.Output, "output", "o", "", "write to FILE instead of standard output")
	cmd.Flags().BoolVarP(&c.Force, "force", "f", false, "overwrite an existing output file")
	cmd.Flags().BoolVarP(&c.Quiet, "quiet", "q", false, "no progress bar")
	_ = cmd.MarkFlagFilename("output")
	return cmd
}

// Run downloads the blob to standard output or the output file.
func (c *blobGetCommand) Run(ctx context.Context, args []string) error {
	if err := checkArgs(args, 2, 2, "ROOM BLOBID"); err != nil {
		return err
	}
	if subjects.ValidateBlobID(args[1]) != nil {
		return usagef("%q is not a blob ID (%d lowercase hex digits, as printed by `unibus blob put`)", args[1], subjects.BlobIDLen)
	}
	toFile := c.Output != "" && c.Output != "-"
	if c.Output == "" && isTerminal(c.app.Stdout) {
		return usagef("standard output is a terminal: write the blob to a file with -o FILE, pipe it, or say -o - to print it anyway")
	}
	if toFile && !c.Force {
		// Checked again, atomically, when the file is put in place.
		if _, err := os.Lstat(c.Output); err == nil {
			return existsError(c.Output)
		}
	}
	conn, room, err := c.app.blobRoom(ctx, args[0])
	if err != nil {
		return err
	}
	// The blob goes to a temporary file first, and reaches FILE or
	// standard output only once it is verified (its SHA-256, and in an
	// encrypted room its authentication): nothing unverified is ever
	// written where the caller looks, and a failure leaves an existing
	// FILE as it was.
	dir := os.TempDir()
	if toFile {
		dir = filepath.Dir(c.Output)
	}
	tmp, err := os.CreateTemp(dir, ".unibus-blob-*.part")
	if err != nil {
		return fmt.Errorf("blob get: %w", err)
	}
	defer func() {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}()
	bar := c.app.progressBar(c.Quiet)
	err = conn.GetBlob(ctx, room.RoomID, args[1], tmp, bar.update)
	bar.finish()
	if err != nil {
		return fmt.Errorf("blob get: %w", err)
	}
	if !toFile {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("blob get: %w", err)
		}
		if _, err := io.Copy(c.app.Stdout, tmp); err != nil {
			return fmt.Errorf("blob get: write standard output: %w", err)
		}
		return nil
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write output file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write output file: %w", err)
	}
	if c.Force {
		err = os.Rename(tmp.Name(), c.Output)
	} else if err = os.Link(tmp.Name(), c.Output); errors.Is(err, fs.ErrExist) {
		return existsError(c.Output) // a link never replaces a file
	}
	if err != nil {
		return fmt.Errorf("write output file: %w", err)
	}
	return nil
}

func existsError(path string) error {
	return usagef("%s already exists: use --force to overwrite it", path)
}

// blobRoom connects and resolves the room, within --timeout.
func (a *app) blobRoom(ctx context.Context, arg string) (*client.Conn, subjects.RoomInfo, error) {
	ctx, cancel := a.bounded(ctx)
	defer cancel()
	conn, err := a.connectWithKey(ctx)
	if err != nil {
		return nil, subjects.RoomInfo{}, err
	}
	room, err := resolveRoom(ctx, conn, arg)
	return conn, room, err
}
