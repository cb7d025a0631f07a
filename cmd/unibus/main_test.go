package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/unibus/unibus/identity"

	"github.com/unibus/unibus/tests/testio"
)

// result is one command line's outcome, as a user sees it.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs command lines with fixed global options and no environment.
type cli struct {
	server, ca string
}

// run executes args (after the global options) and maps the error the way
// main does.
func (c cli) run(t *testing.T, identityFile string, args ...string) result {
	t.Helper()
	var out, errOut testio.Buffer
	code := c.runTo(t, &out, &errOut, nil, identityFile, args...)
	return result{stdout: out.String(), stderr: errOut.String(), code: code}
}

func (c cli) runTo(t *testing.T, stdout, stderr io.Writer, stdin io.Reader, identityFile string, args ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var global []string
	if identityFile != "" {
		global = append(global, "--identity", identityFile)
	}
	if c.server != "" {
		global = append(global, "--server", c.server)
	}
	if c.ca != "" {
		global = append(global, "--ca", c.ca)
	}
	err := run(ctx, append(global, args...), stdin, stdout, stderr, noEnv)
	return report(stderr, err)
}

func noEnv(string) string { return "" }

// saveIdentity writes id to a seed file in dir.
func saveIdentity(t *testing.T, dir, name string, id *identity.Identity) string {
	t.Helper()
	path := filepath.Join(dir, name+".nk")
	if err := identity.Save(path, id); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedPort returns a local TCP address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}
