//go:build linux

package main

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/subjects"
)

// openPTY opens a pseudo-terminal and returns its terminal side (the
// controller side is closed by t.Cleanup).
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	t.Cleanup(func() { _ = ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	t.Cleanup(func() { _ = tty.Close() })
	return tty
}

// TestBlobGetRefusesATerminal: `blob get` without -o does not pour binary
// into a terminal; -o - asks for it in so many words.
func TestBlobGetRefusesATerminal(t *testing.T) {
	tty := openPTY(t)
	if !isTerminal(tty) {
		t.Fatal("the pseudo-terminal is not seen as a terminal")
	}
	blob := strings.Repeat("ab", subjects.BlobIDLen/2)
	var stderr bytes.Buffer
	err := run(t.Context(), []string{"--server", "nats://127.0.0.1:1", "blob", "get", "ops", blob}, nil, tty, &stderr, func(string) string { return "" })
	if code := report(&stderr, err); code != exitcode.Usage || !strings.Contains(stderr.String(), "terminal") || !strings.Contains(stderr.String(), "-o FILE") {
		t.Fatalf("blob get to a terminal: code %d, stderr %q; want %d and the way out", code, stderr.String(), exitcode.Usage)
	}
	// With -o - the command goes on (and fails later, on the server that
	// is not there: not a usage error).
	stderr.Reset()
	err = run(t.Context(), []string{"--server", "nats://127.0.0.1:1", "blob", "get", "ops", blob, "-o", "-"}, nil, tty, &stderr, func(string) string { return "" })
	if code := report(&stderr, err); code == exitcode.Usage || code == exitcode.OK {
		t.Fatalf("blob get -o - to a terminal: code %d, stderr %q; want it to try the server", code, stderr.String())
	}
}
