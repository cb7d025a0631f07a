package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/testio"
)

// devPKI writes a development CA and a server certificate (valid for
// client authentication too) into a new directory.
func devPKI(t *testing.T) certs.Files {
	t.Helper()
	files, err := certs.WriteDevCA(filepath.Join(t.TempDir(), "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// nodeConfigOf parses args (and the file of --config) and builds the node
// configuration.
func nodeConfigOf(t *testing.T, args []string) (node.Config, error) {
	t.Helper()
	var o serveOptions
	if _, err := o.parse("unibusd", args, &bytes.Buffer{}, envOf(nil)); err != nil {
		return node.Config{}, err
	}
	return o.nodeConfig(slog.New(slog.DiscardHandler))
}

// TestRouteSettingsRefused: a node does not open a route listener beyond
// loopback without route TLS unless told so in so many words, and the
// route TLS settings go together; each refusal is a usage error (exit
// code 2) that names the fix, and creates nothing.
func TestRouteSettingsRefused(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "unibus.creds")
	pki := devPKI(t)
	cluster := []string{"--cluster-name", "c", "--name", "n1", "--creds", creds, "--data", dir}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"route listener beyond loopback in the clear", []string{"--cluster-host", "0.0.0.0"},
			[]string{"0.0.0.0 is not loopback", "--cluster-tls-cert", "--insecure-routes", "dev-certs"}},
		{"route listener on the client host beyond loopback", []string{"--host", "10.1.2.3"},
			[]string{"10.1.2.3 is not loopback", "--insecure-routes"}},
		{"route certificate without its key and CA", []string{"--cluster-tls-cert", pki.ServerCert},
			[]string{"go together"}},
		{"route certificate and key without the CA", []string{"--cluster-host", "0.0.0.0", "--cluster-tls-cert", pki.ServerCert, "--cluster-tls-key", pki.ServerKey},
			[]string{"go together"}},
		{"route TLS without a cluster", []string{"--cluster-name", "", "--cluster-ca", pki.CACert},
			[]string{"--cluster-ca needs --cluster-name"}},
		{"route TLS when attached", []string{"--nats", "nats://127.0.0.1:1", "--cluster-tls-cert", pki.ServerCert},
			[]string{"--cluster-tls-cert configures the embedded server"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, cluster...), tc.args...)
			if slices.Contains(tc.args, "--nats") {
				args = append([]string{"--creds", creds}, tc.args...)
			}
			_, err := nodeConfigOf(t, args)
			if err == nil || !errors.Is(err, exitcode.ErrUsage) || exitCode(err) != 2 {
				t.Fatalf("err = %v, want a usage error (exit code 2)", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
	if _, err := os.Stat(creds); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused configuration wrote credentials: %v", err)
	}
	// Route TLS files that cannot be used: the message names the flags
	// and the file.
	missing := filepath.Join(dir, "nope.pem")
	other := devPKI(t)
	for name, files := range map[string][4]string{ // cert, key, CA, the file the message names
		"missing certificate":        {missing, pki.ServerKey, pki.CACert, missing},
		"missing CA":                 {pki.ServerCert, pki.ServerKey, missing, missing},
		"certificate of another CA":  {other.ServerCert, other.ServerKey, pki.CACert, other.ServerCert},
		"key of another certificate": {pki.ServerCert, other.ServerKey, pki.CACert, other.ServerKey},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := nodeConfigOf(t, append(append([]string{}, cluster...), "--cluster-tls-cert", files[0], "--cluster-tls-key", files[1], "--cluster-ca", files[2]))
			if err == nil || !strings.Contains(err.Error(), "--cluster-tls-cert") || !strings.Contains(err.Error(), files[3]) {
				t.Fatalf("err = %v, want it to name the route TLS flags and %s", err, files[3])
			}
			if exitCode(err) == 0 {
				t.Fatal("exit code 0")
			}
		})
	}
}

// TestRouteSettingsAccepted: loopback routes without TLS, TLS routes
// anywhere, and plaintext routes beyond loopback with --insecure-routes
// (flag or setting); every one is authorized with the route credentials
// of the deployment keys.
func TestRouteSettingsAccepted(t *testing.T) {
	if authcallout.RouteTLSTimeout != embedded.RouteTLSTimeout {
		t.Fatalf("route TLS timeouts differ: %d s in printed configurations, %d s in embedded nodes", authcallout.RouteTLSTimeout, embedded.RouteTLSTimeout)
	}
	dir := t.TempDir()
	creds := filepath.Join(dir, "unibus.creds")
	pki := devPKI(t)
	cluster := []string{"--cluster-name", "c", "--name", "n1", "--creds", creds, "--data", dir, "--routes", "nats-route://127.0.0.1:6223"}
	for _, tc := range []struct {
		name              string
		args              []string
		wantTLS, insecure bool
	}{
		{"loopback in the clear", nil, false, false},
		{"localhost in the clear", []string{"--cluster-host", "localhost"}, false, false},
		{"TLS beyond loopback", []string{"--cluster-host", "0.0.0.0", "--cluster-tls-cert", pki.ServerCert, "--cluster-tls-key", pki.ServerKey, "--cluster-ca", pki.CACert}, true, false},
		{"insecure beyond loopback", []string{"--host", "0.0.0.0", "--insecure-routes"}, false, true},
		{"insecure beyond loopback from the config file", []string{"--config", writeConfig(t, "cluster_host: 10.1.2.3\ninsecure_routes: true\n")}, false, true},
		{"route TLS from the config file", []string{"--config", writeConfig(t, fmt.Sprintf("cluster_host: 0.0.0.0\ncluster_tls_cert: %q\ncluster_tls_key: %q\ncluster_ca: %q\n", pki.ServerCert, pki.ServerKey, pki.CACert))}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := nodeConfigOf(t, append(append([]string{}, cluster...), tc.args...))
			if err != nil {
				t.Fatal(err)
			}
			user, password := routeCredentials(t, creds)
			c := cfg.Server.Cluster
			if c.Username != user || c.Password != password {
				t.Fatal("routes not authorized with the route credentials of the deployment keys")
			}
			if (c.TLS != nil) != tc.wantTLS || c.InsecureRoutes != tc.insecure {
				t.Fatalf("route TLS %v, insecure %v; want %v, %v", c.TLS != nil, c.InsecureRoutes, tc.wantTLS, tc.insecure)
			}
			// The embedded server takes it, and its routes present the
			// credentials.
			opts, err := cfg.Server.Options()
			if err != nil {
				t.Fatal(err)
			}
			if opts.Cluster.Username != user || len(opts.Routes) != 1 || opts.Routes[0].User.Username() != user {
				t.Fatalf("nats-server options: cluster user %q, routes %v", opts.Cluster.Username, opts.Routes)
			}
		})
	}
}

// TestSoftAuthBeyondLoopback: --auth-mode soft or off, which let unsigned
// requests through, are refused when clients beyond this machine reach
// the services, unless --insecure (flag or setting) is given.
func TestSoftAuthBeyondLoopback(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "unibus.creds")
	keys, err := authcallout.GenerateKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	if err := authcallout.WriteKeysFile(creds, keys); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		args    []string
		refused string // what the error names; "" when accepted
	}{
		{"soft beyond loopback", []string{"--auth-mode", "soft", "--host", "0.0.0.0"}, "--host 0.0.0.0"},
		{"off beyond loopback", []string{"--auth-mode", "off", "--host", "192.0.2.7"}, "--host 192.0.2.7"},
		{"off attached to remote servers", []string{"--auth-mode", "off", "--nats", "nats://127.0.0.1:4222,nats://n2.example:4222", "--creds", creds}, "--nats nats://127.0.0.1:4222,nats://n2.example:4222"},
		{"soft beyond loopback, insecure", []string{"--auth-mode", "soft", "--host", "0.0.0.0", "--insecure"}, ""},
		{"off beyond loopback, insecure from the config file", []string{"--config", writeConfig(t, "auth_mode: off\nhost: 0.0.0.0\ninsecure: true\n")}, ""},
		{"soft on loopback", []string{"--auth-mode", "soft"}, ""},
		{"soft on the default host", []string{"--auth-mode", "soft", "--host", ""}, ""},
		{"off on IPv6 loopback", []string{"--auth-mode", "off", "--host", "::1"}, ""},
		{"off attached to local servers", []string{"--auth-mode", "off", "--nats", "127.0.0.1:4222,nats://localhost:4223", "--creds", creds}, ""},
		{"enforce beyond loopback", []string{"--host", "0.0.0.0"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := nodeConfigOf(t, append([]string{"--data", t.TempDir()}, tc.args...))
			if tc.refused == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, exitcode.ErrUsage) || exitCode(err) != 2 {
				t.Fatalf("err = %v, want a usage error (exit code 2)", err)
			}
			for _, want := range []string{tc.refused, "beyond loopback", "--auth-mode enforce", "--insecure"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
	// And through the command, as an operator meets it.
	err = (&serveCommand{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: envOf(map[string]string{"UNIBUS_DATA": t.TempDir()})}).
		Run(context.Background(), []string{"--auth-mode", "soft", "--host", "0.0.0.0"})
	if exitCode(err) != 2 {
		t.Fatalf("unibusd --auth-mode soft --host 0.0.0.0: %v, exit code %d; want 2", err, exitCode(err))
	}
}

// TestNATSConfigCluster: nats-config prints the cluster block: commented
// guidance by default (an including server stays unclustered), an active
// one with --cluster-name that nats-server loads with route authorization,
// credentialed routes and mutual TLS; the same refusals as a node.
func TestNATSConfigCluster(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "unibus.creds")
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := (&natsConfigCommand{Stdout: &out, Stderr: &bytes.Buffer{}, Getenv: envOf(nil)}).Run(context.Background(), append([]string{"--creds", creds}, args...))
		return out.String(), err
	}
	guide, err := run()
	if err != nil {
		t.Fatal(err)
	}
	user, password := routeCredentials(t, creds)
	if !strings.Contains(guide, "# cluster {") || !strings.Contains(guide, password) || !strings.Contains(guide, "Secret") {
		t.Fatalf("the default output lacks the commented cluster block with the route password:\n%s", guide)
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(guide); err != nil {
		t.Fatal(err)
	}
	if opts.Cluster.Name != "" || opts.Cluster.Username != "" {
		t.Fatal("the default output clusters the server that includes it")
	}

	pki := devPKI(t)
	active, err := run("--cluster-name", "prod", "--cluster-host", "0.0.0.0", "--cluster-port", "7222", "--routes", "10.0.0.2:7222, 10.0.0.3:7222",
		"--cluster-tls-cert", pki.ServerCert, "--cluster-tls-key", pki.ServerKey, "--cluster-ca", pki.CACert)
	if err != nil {
		t.Fatal(err)
	}
	opts = &server.Options{}
	if err := opts.ProcessConfigString(active); err != nil {
		t.Fatalf("the printed configuration does not load: %v\n%s", err, active)
	}
	if opts.Cluster.Name != "prod" || opts.Cluster.Port != 7222 || opts.Cluster.Username != user || opts.Cluster.Password != password {
		t.Fatalf("cluster %q port %d user %q: not as asked or not authorized", opts.Cluster.Name, opts.Cluster.Port, opts.Cluster.Username)
	}
	if c := opts.Cluster.TLSConfig; c == nil || c.ClientCAs == nil || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Fatal("route TLS is not mutual with the CA")
	}
	if len(opts.Routes) != 2 || opts.Routes[1].User.Username() != user || opts.Routes[1].Host != "10.0.0.3:7222" {
		t.Fatalf("routes %v", opts.Routes)
	}
	insecure, err := run("--cluster-name", "prod", "--cluster-host", "10.0.0.1", "--insecure-routes")
	if err != nil || !strings.Contains(insecure, `listen: "10.0.0.1:6222"`) {
		t.Fatalf("--insecure-routes: %v\n%s", err, insecure)
	}
	// Written to a file: secret, mode 0600.
	out := filepath.Join(dir, "unibus.conf")
	if _, err := run("--out", out); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(out); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("written configuration: %v, mode %v; want 0600", err, info.Mode().Perm())
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-name", "prod"}, "--insecure-routes"},
		{[]string{"--cluster-name", "prod", "--cluster-tls-cert", pki.ServerCert, "--cluster-tls-key", pki.ServerKey}, "go together"},
		{[]string{"--routes", "10.0.0.2:6222"}, "--routes needs --cluster-name"},
		{[]string{"--cluster-tls-cert", pki.ServerCert}, "--cluster-tls-cert needs --cluster-name"},
		{[]string{"--cluster-name", "prod", "--cluster-host", "127.0.0.1", "--routes", "nats://10.0.0.2:6222"}, "nats-route"},
	} {
		if _, err := run(tc.args...); !errors.Is(err, exitcode.ErrUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want a usage error mentioning %q", tc.args, err, tc.want)
		}
	}
}

// TestServeClusterRouteTLS: two unibusd nodes configured by files with
// the route TLS settings (certificates from unibusd dev-certs) and one
// credentials file form a cluster: their routes are authorized with the
// route credentials and run over mutual TLS.
func TestServeClusterRouteTLS(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "unibus.creds")
	if err := (&natsConfigCommand{Stdout: &testio.Buffer{}, Stderr: &testio.Buffer{}, Getenv: envOf(nil)}).Run(context.Background(), []string{"--creds", creds}); err != nil {
		t.Fatal(err)
	}
	pkiDir := filepath.Join(dir, "pki")
	if err := (&devCertsCommand{Stdout: &testio.Buffer{}, Stderr: &testio.Buffer{}}).Run(context.Background(), []string{"--dir", pkiDir}); err != nil {
		t.Fatal(err)
	}
	// The route ports are chosen ahead (each node routes to the other);
	// another test process may take one in between: then start again on
	// new ones.
	for attempt := 1; ; attempt++ {
		nodes, err := startTLSPair(t, dir, fmt.Sprintf("try%d", attempt), creds, pkiDir)
		if err != nil && strings.Contains(err.Error(), "address already in use") && attempt < 3 {
			t.Logf("attempt %d: %v", attempt, err)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		// Ready means JetStream elected its leaders over the routes;
		// they exist both ways.
		for _, n := range nodes {
			if n.Server.NATS().NumRoutes() == 0 {
				t.Fatalf("%s has no routes", n.Server.NATS().Name())
			}
		}
		return
	}
}

// startTLSPair starts two clustered unibusd nodes with route TLS from the
// dev-certs in pkiDir, stopped when the test ends (or at once when one
// fails to start).
func startTLSPair(t *testing.T, dir, tag, creds, pkiDir string) ([]*node.Node, error) {
	t.Helper()
	routePorts := natstest.FreePorts(t, 2)
	var routes []string
	for _, p := range routePorts {
		routes = append(routes, fmt.Sprintf("%q", fmt.Sprintf("nats-route://127.0.0.1:%d", p)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *node.Node, 2)
	failed := make(chan error, 2)
	stopped := make(chan error, 2)
	var logs [2]testio.Buffer
	for i := range 2 {
		conf := fmt.Sprintf(`name: n%d
cluster_name: unibus-tls
port: -1
cluster_port: %d
routes: [ %s ]
cluster_tls_cert: %q
cluster_tls_key: %q
cluster_ca: %q
data: %q
creds: %q
`, i+1, routePorts[i], strings.Join(routes, ", "), filepath.Join(pkiDir, "server.pem"), filepath.Join(pkiDir, "server-key.pem"),
			filepath.Join(pkiDir, "ca.pem"), filepath.Join(dir, fmt.Sprintf("%s-data%d", tag, i+1)), creds)
		path := filepath.Join(dir, fmt.Sprintf("%s-n%d.conf", tag, i+1))
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := &serveCommand{Stdout: &testio.Buffer{}, Stderr: &logs[i], Getenv: envOf(nil), ready: func(n *node.Node) { ready <- n }}
		go func() {
			err := cmd.Run(ctx, []string{"--config", path})
			if err != nil {
				failed <- err
			}
			stopped <- err
		}()
	}
	stop := func() {
		cancel()
		for range 2 {
			select {
			case <-stopped:
			case <-time.After(30 * time.Second):
				t.Error("a node did not stop within 30s")
				return
			}
		}
	}
	var nodes []*node.Node
	for range 2 {
		select {
		case n := <-ready:
			nodes = append(nodes, n)
		case err := <-failed:
			stop()
			return nil, fmt.Errorf("node failed: %w\n%s\n%s", err, logs[0].String(), logs[1].String())
		case <-time.After(90 * time.Second):
			stop()
			return nil, fmt.Errorf("cluster not ready within 90s\n%s\n%s", logs[0].String(), logs[1].String())
		}
	}
	t.Cleanup(stop)
	return nodes, nil
}

// routeCredentials are the route user and password of the deployment keys
// in the creds file.
func routeCredentials(t *testing.T, creds string) (user, password string) {
	t.Helper()
	keys, err := authcallout.ReadKeysFile(creds)
	if err != nil {
		t.Fatal(err)
	}
	user, password, err = keys.RouteCredentials()
	if err != nil {
		t.Fatal(err)
	}
	return user, password
}
