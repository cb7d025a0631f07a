package nodetest

import (
	"testing"

	"github.com/unibus/unibus/node"
)

// Bus is a node whose client port serves TLS (RunTLS), and the CA file
// that its clients pin: the bus the client tests talk to.
type Bus struct {
	Node *node.Node
	CA   string
}

// NewBus starts a Bus, shut down by t.Cleanup.
func NewBus(t testing.TB, opts ...Option) *Bus {
	t.Helper()
	n, ca := RunTLS(t, opts...)
	return &Bus{Node: n, CA: ca}
}
