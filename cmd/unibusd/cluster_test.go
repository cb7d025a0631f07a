package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
	"github.com/unibus/unibus/tests/testio"
)

// TestServeEmbeddedCluster starts three unibusd nodes from configuration
// files that join them into one cluster with R3 buckets and one shared
// credentials file: a user added
// through node 1 is admitted and served on node 3.
func TestServeEmbeddedCluster(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "unibus.creds")
	clientPorts, routePorts := natstest.FreePorts(t, 3), natstest.FreePorts(t, 3)
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", p)))
	}
	// The operator makes the shared credentials once (README: cluster).
	if err := (&natsConfigCommand{Stdout: &testio.Buffer{}, Stderr: &testio.Buffer{}, Getenv: envOf(nil)}).Run(context.Background(), []string{"--creds", creds}); err != nil {
		t.Fatal(err)
	}
	admin := nodetest.NewIdentity(t)
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		n   *node.Node
		err error
	}
	ready := make(chan result, 3)
	var logs [3]testio.Buffer
	stopped := make(chan error, 3)
	for i := range 3 {
		conf := fmt.Sprintf(`name: n%d
cluster_name: unibus-cli
port: %d
cluster_port: %d
routes: [ %s ]
data: %q
creds: %q
replicas: 3
admin: %s
`, i+1, clientPorts[i], routePorts[i], strings.Join(routes, ", "), filepath.Join(dir, fmt.Sprintf("data%d", i+1)), creds, admin.PublicKey())
		path := filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := &serveCommand{Stdout: &testio.Buffer{}, Stderr: &logs[i], Getenv: envOf(nil),
			ready: func(n *node.Node) { ready <- result{n: n} }}
		go func() {
			err := cmd.Run(ctx, []string{"--config", path})
			if err != nil {
				ready <- result{err: err}
			}
			stopped <- err
		}()
	}
	t.Cleanup(func() {
		cancel()
		for range 3 {
			select {
			case <-stopped:
			case <-time.After(30 * time.Second):
				t.Error("a node did not stop within 30s")
				return
			}
		}
	})
	startedAt := time.Now()
	var nodes []*node.Node
	for range 3 {
		select {
		case r := <-ready:
			if r.err != nil {
				t.Fatalf("node failed: %v\n%s\n%s\n%s", r.err, logs[0].String(), logs[1].String(), logs[2].String())
			}
			nodes = append(nodes, r.n)
		case <-time.After(90 * time.Second):
			t.Fatal("cluster not ready within 90s")
		}
	}
	t.Logf("cluster ready after %s", time.Since(startedAt))
	reqCtx, reqCancel := context.WithTimeout(ctx, 30*time.Second)
	defer reqCancel()
	url := func(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]) }
	a, err := client.Connect(reqCtx, url(0), admin)
	if err != nil {
		t.Fatalf("admin connects to n1: %v", err)
	}
	defer a.Close()
	bob := nodetest.NewIdentity(t)
	if _, err := a.AddUser(reqCtx, bob.PublicKey(), "bob", false); err != nil {
		t.Fatalf("add bob through n1: %v", err)
	}
	b, err := client.Connect(reqCtx, url(2), bob)
	if err != nil {
		t.Fatalf("bob connects to n3: %v", err)
	}
	defer b.Close()
	if got, err := b.GetUser(reqCtx, bob.PublicKey()); err != nil || got.Name != "bob" {
		t.Fatalf("bob reads himself through n3: %+v, %v", got, err)
	}
	js, err := jetstream.New(nodes[1].StoreConn)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(reqCtx, kvstore.BucketUsers)
	if err != nil {
		t.Fatal(err)
	}
	status, err := kv.Status(reqCtx)
	if err != nil {
		t.Fatal(err)
	}
	if r := status.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; r != 3 {
		t.Fatalf("users bucket at R%d, want R3", r)
	}
}
