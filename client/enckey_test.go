package client_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestLostEncryptionKeyIsNotReplacedSilently: a missing key file while a
// key is registered is an error that changes nothing (a new key would cost
// every room key sealed to the old one); ReplaceEncryptionKey replaces it
// on purpose, and never overwrites a file.
func TestLostEncryptionKeyIsNotReplacedSilently(t *testing.T) {
	ctx := context.Background()
	b := newBus(t)
	id := nodetest.AddUser(t, b.Node, "alice", false)
	path := filepath.Join(t.TempDir(), "alice.nk.enc")
	connect := func() *client.Conn {
		c, err := client.Connect(ctx, b.Node.ClientURL(), id, client.WithCA(b.CA))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	first := connect()
	if err := first.SetEncryptionKey(ctx, path); err != nil {
		t.Fatal(err)
	}
	registered := func(c *client.Conn) []byte {
		t.Helper()
		u, err := c.GetUser(ctx, id.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		return u.EncKey
	}
	before := registered(first)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	second := connect()
	if err := second.SetEncryptionKey(ctx, path); !errors.Is(err, client.ErrEncryptionKeyLost) {
		t.Fatalf("set encryption key with the file gone: %v, want ErrEncryptionKeyLost", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a key file was created: %v", err)
	}
	if after := registered(second); !bytes.Equal(after, before) {
		t.Fatal("the registered key changed")
	}

	if err := second.ReplaceEncryptionKey(ctx, path); err != nil {
		t.Fatalf("replace encryption key: %v", err)
	}
	replaced := registered(second)
	if bytes.Equal(replaced, before) || len(replaced) == 0 {
		t.Fatal("the key was not replaced")
	}
	if err := second.ReplaceEncryptionKey(ctx, path); err == nil {
		t.Fatal("replace encryption key overwrote an existing key file")
	}
	if now := registered(second); !bytes.Equal(now, replaced) {
		t.Fatal("a refused replacement changed the registered key")
	}
	// The replaced key is the one in the file: setting it again is a no-op
	// success.
	if err := connect().SetEncryptionKey(ctx, path); err != nil {
		t.Fatalf("set encryption key from the new file: %v", err)
	}
}
