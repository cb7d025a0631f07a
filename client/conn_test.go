package client_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

func TestConnectTLSPinnedCA(t *testing.T) {
	ctx := context.Background()
	n, ca := nodetest.RunTLS(t)
	url := n.ClientURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("TLS node URL %q is not tls://", url)
	}
	alice := nodetest.AddUser(t, n, "alice", false)

	t.Run("pinned CA connects", func(t *testing.T) {
		c, err := client.Connect(ctx, url, alice, client.WithCA(ca))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer func() { _ = c.Close() }()
		if !c.NATS().TLSRequired() {
			t.Fatal("connection is not TLS")
		}
		if err := c.NATS().Publish(subjects.RoomsMine, nil); err != nil {
			t.Fatal(err)
		}
		if err := c.NATS().FlushTimeout(2 * time.Second); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("without the CA the handshake fails", func(t *testing.T) {
		c, err := client.Connect(ctx, url, alice)
		if err == nil {
			_ = c.Close()
			t.Fatal("connected without trusting the CA")
		}
		if !errors.Is(err, client.ErrConnect) {
			t.Fatalf("error %v does not wrap ErrConnect", err)
		}
	})
	t.Run("another CA fails the handshake", func(t *testing.T) {
		other, err := certs.WriteDevCA(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Connect(ctx, url, alice, client.WithCA(other.CACert))
		if err == nil {
			_ = c.Close()
			t.Fatal("connected with a CA that did not sign the server")
		}
	})
	t.Run("CA with a plaintext URL is refused", func(t *testing.T) {
		plain := strings.Replace(url, "tls://", "nats://", 1)
		_, err := client.Connect(ctx, plain, alice, client.WithCA(ca))
		if !errors.Is(err, certs.ErrPlaintextURL) {
			t.Fatalf("error = %v, want ErrPlaintextURL", err)
		}
	})
	t.Run("missing CA file", func(t *testing.T) {
		_, err := client.Connect(ctx, url, alice, client.WithCA(filepath.Join(t.TempDir(), "nope.pem")))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("non-PEM CA file", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.pem")
		if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := client.Connect(ctx, url, alice, client.WithCA(bad))
		if !errors.Is(err, certs.ErrNoCertificates) {
			t.Fatalf("error = %v, want ErrNoCertificates", err)
		}
	})
}

func TestConnectRefusedWhenUnregistered(t *testing.T) {
	n := nodetest.Run(t)
	stranger := nodetest.NewIdentity(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := client.Connect(ctx, n.ClientURL(), stranger); !errors.Is(err, client.ErrConnect) {
		t.Fatalf("unregistered connect = %v, want ErrConnect", err)
	}
	if _, err := client.Connect(ctx, n.ClientURL(), nil); !errors.Is(err, client.ErrConnect) {
		t.Fatalf("nil identity = %v, want ErrConnect", err)
	}
}

// TestListUsersPages lists more users than one page holds: ListUsers
// follows the pages and returns each user once, in key order, and
// ListUsersPage returns one page and where the next starts.
func TestListUsersPages(t *testing.T) {
	ctx := context.Background()
	n := nodetest.Run(t)
	admin := nodetest.AddUser(t, n, "admin", true)
	for range subjects.MaxListUsersLimit + 4 {
		if _, err := n.Store.AddUser(ctx, kvstore.User{Pub: nodetest.NewIdentity(t).PublicKey()}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.Connect(ctx, n.ClientURL(), admin)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer func() { _ = c.Close() }()

	users, err := c.ListUsers(ctx)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var pubs []string
	for _, u := range users {
		pubs = append(pubs, u.Pub)
	}
	if len(pubs) != subjects.MaxListUsersLimit+5 || !slices.IsSorted(pubs) || len(slices.Compact(slices.Clone(pubs))) != len(pubs) {
		t.Fatalf("listed %d users (sorted %v), want %d distinct in key order", len(pubs), slices.IsSorted(pubs), subjects.MaxListUsersLimit+5)
	}

	page, next, err := c.ListUsersPage(ctx, pubs[9], 2)
	if err != nil || len(page) != 2 || page[0].Pub != pubs[10] || next != pubs[11] {
		t.Fatalf("page of 2 after the 10th = %v, next %q, %v; want %s, %s", page, next, err, pubs[10], pubs[11])
	}
	page, next, err = c.ListUsersPage(ctx, pubs[len(pubs)-2], 0)
	if err != nil || len(page) != 1 || next != "" {
		t.Fatalf("last page = %d users, next %q, %v; want 1 and no next", len(page), next, err)
	}
	var apiErr *client.APIError
	if _, _, err := c.ListUsersPage(ctx, "", -1); !errors.As(err, &apiErr) || apiErr.Code != subjects.CodeBadRequest {
		t.Fatalf("limit -1 = %v, want a 400", err)
	}
}
