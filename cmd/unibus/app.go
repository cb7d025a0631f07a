package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// Defaults of the global options.
const (
	defaultServer  = "nats://127.0.0.1:4222"
	defaultTimeout = 10 * time.Second
)

// Environment variables of the global options.
const (
	envIdentity = "UNIBUS_IDENTITY"
	envServer   = "UNIBUS_SERVER"
	envCA       = "UNIBUS_CA"
	envInsecure = "UNIBUS_INSECURE"
)

// app holds the global options and the state shared by the commands of one
// invocation: the identity and the connection, both opened on first use.
type app struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// IdentityFile is the nkey seed file of the caller.
	IdentityFile string
	// Server is the NATS URL (comma-separated for several servers).
	Server string
	// CA, when set, pins TLS to this CA certificate file.
	CA string
	// Insecure allows a plaintext server URL beyond loopback
	// (client.WithInsecure).
	Insecure bool
	// Timeout bounds connecting and each command's requests.
	Timeout time.Duration

	id      *identity.Identity
	conn    *client.Conn
	withKey bool
}

// defaultIdentityFile is $UNIBUS_IDENTITY, else
// $XDG_CONFIG_HOME/unibus/identity.nk, else ~/.config/unibus/identity.nk.
func defaultIdentityFile(getenv func(string) string) string {
	if f := getenv(envIdentity); f != "" {
		return f
	}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "unibus", "identity.nk")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".config", "unibus", "identity.nk")
	}
	return "identity.nk"
}

// bounded returns ctx limited by the --timeout option.
func (a *app) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.Timeout <= 0 {
		return context.WithTimeout(ctx, defaultTimeout)
	}
	return context.WithTimeout(ctx, a.Timeout)
}

// session runs fn, within --timeout, with a connection whose encryption
// key is registered (connectWithKey): the preamble of most commands.
func (a *app) session(ctx context.Context, fn func(context.Context, *client.Conn) error) error {
	return a.withConn(ctx, a.connectWithKey, fn)
}

// sessionWithoutKey is session for commands that never touch an encrypted
// room (user administration).
func (a *app) sessionWithoutKey(ctx context.Context, fn func(context.Context, *client.Conn) error) error {
	return a.withConn(ctx, a.connect, fn)
}

// inRoom is session with the room that arg names (an ID or a name of one
// of the caller's rooms) resolved.
func (a *app) inRoom(ctx context.Context, arg string, fn func(context.Context, *client.Conn, subjects.RoomInfo) error) error {
	return a.session(ctx, func(ctx context.Context, conn *client.Conn) error {
		room, err := resolveRoom(ctx, conn, arg)
		if err != nil {
			return err
		}
		return fn(ctx, conn, room)
	})
}

func (a *app) withConn(ctx context.Context, connect func(context.Context) (*client.Conn, error), fn func(context.Context, *client.Conn) error) error {
	ctx, cancel := a.bounded(ctx)
	defer cancel()
	conn, err := connect(ctx)
	if err != nil {
		return err
	}
	return fn(ctx, conn)
}

// identity loads the identity seed file once.
func (a *app) identity() (*identity.Identity, error) {
	if a.id != nil {
		return a.id, nil
	}
	id, err := identity.Load(a.IdentityFile)
	if err != nil {
		return nil, &identityError{path: a.IdentityFile, err: err}
	}
	a.id = id
	return id, nil
}

// connect opens the connection to the bus on first use.
func (a *app) connect(ctx context.Context) (*client.Conn, error) {
	if a.conn != nil {
		return a.conn, nil
	}
	id, err := a.identity()
	if err != nil {
		return nil, err
	}
	opts := []client.Option{client.WithName("unibus-cli")}
	if a.CA != "" {
		opts = append(opts, client.WithCA(a.CA))
	}
	if a.Insecure {
		opts = append(opts, client.WithInsecure())
	}
	c, err := client.Connect(ctx, a.Server, id, opts...)
	if err != nil {
		if isAuthRefusal(err) {
			return nil, &notAdmittedError{pub: id.PublicKey(), err: err}
		}
		return nil, err
	}
	a.conn = c
	return c, nil
}

// connectWithKey connects and registers the identity's encryption key
// (kept beside the seed file, created on first use): every command that
// touches encrypted rooms needs it, and others can seal room keys to it
// only once it is registered.
func (a *app) connectWithKey(ctx context.Context) (*client.Conn, error) {
	c, err := a.connect(ctx)
	if err != nil {
		return nil, err
	}
	if a.withKey {
		return c, nil
	}
	if err := c.SetEncryptionKey(ctx, client.EncryptionKeyPath(a.IdentityFile)); err != nil {
		return nil, fmt.Errorf("register encryption key: %w", err)
	}
	a.withKey = true
	return c, nil
}

// Close drains and closes the connection, if one was opened.
func (a *app) Close() error {
	if a.conn == nil {
		return nil
	}
	err := a.conn.Close()
	a.conn = nil
	return err
}

// isAuthRefusal reports whether err is the bus refusing the identity at
// connect time (the auth callout denied it).
func isAuthRefusal(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) ||
		errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrAuthExpired)
}
