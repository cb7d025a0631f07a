package nodetest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
)

// Option adjusts a node's configuration before it starts.
type Option func(*node.Config)

// WithXKey turns on xkey encryption of the callout exchange.
func WithXKey() Option { return func(c *node.Config) { c.XKey = true } }

// Run starts a node on a random port with storage in a temporary directory.
func Run(t testing.TB, opts ...Option) *node.Node {
	t.Helper()
	cfg := node.Config{
		Server: embedded.Config{Port: embedded.RandomPort, DataDir: t.TempDir()},
		Store:  kvstore.DefaultConfig(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	n, err := node.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

// NewIdentity generates an identity without registering it.
func NewIdentity(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatalf("generate identity: %v", err)
	}
	return id
}

// AddUser generates an identity and registers it (admin when asked).
func AddUser(t testing.TB, n *node.Node, name string, admin bool) *identity.Identity {
	t.Helper()
	id := NewIdentity(t)
	if _, err := n.Store.AddUser(context.Background(), kvstore.User{Pub: id.PublicKey(), Name: name, Admin: admin}); err != nil {
		t.Fatalf("add user %s: %v", name, err)
	}
	return id
}

// ConnectOptions are the options of a peer connection as identity id: nkey
// authentication (the server's nonce signed with id.SignNonce, which signs
// nothing but a login nonce) and the per-user inbox prefix.
func ConnectOptions(id *identity.Identity) []nats.Option {
	return []nats.Option{
		nats.Nkey(id.PublicKey(), id.SignNonce),
		nats.CustomInboxPrefix("_INBOX." + id.PublicKey()),
	}
}

// RunTLS starts a node like Run whose client port serves TLS with a
// throwaway CA (certs.WriteDevCA); it returns the node and the CA file
// that clients pin.
func RunTLS(t testing.TB, opts ...Option) (*node.Node, string) {
	t.Helper()
	files, err := certs.WriteDevCA(t.TempDir(), nil)
	if err != nil {
		t.Fatalf("write dev CA: %v", err)
	}
	serverTLS, err := certs.ServerConfig(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatalf("load server key pair: %v", err)
	}
	opts = append([]Option{func(c *node.Config) { c.Server.TLS = serverTLS }}, opts...)
	return Run(t, opts...), files.CACert
}
