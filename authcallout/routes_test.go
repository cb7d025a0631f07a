package authcallout_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/unibus/unibus/authcallout"
)

// TestRouteCredentials: the route credentials are a function of the
// deployment keys alone (every node that shares the credentials file
// agrees on them), differ between deployments, and are not a seed.
func TestRouteCredentials(t *testing.T) {
	k1, err := authcallout.GenerateKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := authcallout.GenerateKeys(true)
	if err != nil {
		t.Fatal(err)
	}
	user, pass, err := k1.RouteCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if user != authcallout.RouteUser || len(pass) < 40 {
		t.Fatalf("credentials %q / %q: want %q and a 256-bit password", user, pass, authcallout.RouteUser)
	}
	// Deterministic, also through the credentials file.
	path := t.TempDir() + "/unibus.creds"
	if err := authcallout.WriteKeysFile(path, k1); err != nil {
		t.Fatal(err)
	}
	reread, err := authcallout.ReadKeysFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []authcallout.Keys{k1, reread} {
		if u, p, err := k.RouteCredentials(); err != nil || u != user || p != pass {
			t.Fatalf("second derivation %q / %q, %v; want %q / %q", u, p, err, user, pass)
		}
	}
	// Another deployment, another password.
	if _, p2, err := k2.RouteCredentials(); err != nil || p2 == pass {
		t.Fatalf("two key sets share the route password %q (%v)", p2, err)
	}
	// Never a seed, nor part of one; safe in a URL as it is.
	for _, kp := range []interface{ Seed() ([]byte, error) }{k1.Issuer, k1.CalloutUser, k1.ServiceUser, k1.SystemUser} {
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(seed), pass) || strings.Contains(pass, string(seed)) {
			t.Fatal("the route password is a seed")
		}
	}
	if url.QueryEscape(pass) != pass {
		t.Fatalf("password %q needs escaping in a route URL", pass)
	}
	if _, _, err := (authcallout.Keys{}).RouteCredentials(); !errors.Is(err, authcallout.ErrConfigValidation) {
		t.Fatalf("keys without an issuer: err = %v, want ErrConfigValidation", err)
	}
}

func TestRouteURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.2:6222", "nats-route://u:p@10.0.0.2:6222"},
		{"nats-route://n2.example:7222", "nats-route://u:p@n2.example:7222"},
		{"nats-route://n2.example:7222/", "nats-route://u:p@n2.example:7222"},
		{"[::1]:6222", "nats-route://u:p@[::1]:6222"},
	} {
		if got, err := authcallout.RouteURL(tc.in, "u", "p"); err != nil || got != tc.want {
			t.Errorf("RouteURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"nats://h:1", "nats-route://x:y@h:1", "h", "nats-route://h", "nats-route://h:1/x", "::nope"} {
		if got, err := authcallout.RouteURL(bad, "u", "p"); !errors.Is(err, authcallout.ErrConfigValidation) {
			t.Errorf("RouteURL(%q) = %q, %v; want ErrConfigValidation", bad, got, err)
		}
	}
}

// TestNATSClusterConfig: the printed cluster block loads into nats-server
// with route authorization, credentialed routes and mutual TLS; without a
// cluster name it is guidance (commented out) that changes nothing.
func TestNATSClusterConfig(t *testing.T) {
	k, err := authcallout.GenerateKeys(false)
	if err != nil {
		t.Fatal(err)
	}
	user, pass, err := k.RouteCredentials()
	if err != nil {
		t.Fatal(err)
	}
	text, err := authcallout.NATSClusterConfig(k, authcallout.ClusterSettings{
		Name: "prod", Host: "10.0.0.1", Port: 7222,
		Routes: []string{"10.0.0.2:7222", "nats-route://10.0.0.3:7222"},
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(text); err != nil {
		t.Fatalf("the cluster block does not load: %v\n%s", err, text)
	}
	if opts.Cluster.Name != "prod" || opts.Cluster.Host != "10.0.0.1" || opts.Cluster.Port != 7222 {
		t.Fatalf("cluster %+v", opts.Cluster)
	}
	if opts.Cluster.Username != user || opts.Cluster.Password != pass {
		t.Fatal("the cluster block does not authorize routes with the route credentials")
	}
	if len(opts.Routes) != 2 {
		t.Fatalf("routes %v", opts.Routes)
	}
	for _, r := range opts.Routes {
		if p, _ := r.User.Password(); r.User.Username() != user || p != pass {
			t.Fatalf("route %s does not present the route credentials", r.Redacted())
		}
	}
	if opts.Cluster.TLSConfig != nil || !strings.Contains(text, "# tls {") {
		t.Fatal("without TLS files, the tls block must be commented guidance")
	}

	// With TLS files: a mutual TLS block (files need to exist to load).
	withTLS, err := authcallout.NATSClusterConfig(k, authcallout.ClusterSettings{
		Name: "prod", TLSCert: "/pki/n1.pem", TLSKey: "/pki/n1-key.pem", TLSCA: "/pki/ca.pem",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`cert_file: "/pki/n1.pem"`, `key_file: "/pki/n1-key.pem"`, `ca_file: "/pki/ca.pem"`, "verify: true", `listen: "0.0.0.0:6222"`} {
		if !strings.Contains(withTLS, want) {
			t.Errorf("cluster block with TLS lacks %q:\n%s", want, withTLS)
		}
	}
	if strings.Contains(withTLS, "# tls {") {
		t.Error("the tls block is commented out although the files were given")
	}

	// Guidance: every line a comment, with the credentials to copy.
	guide, err := authcallout.NATSClusterConfig(k, authcallout.ClusterSettings{})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(guide), "\n") {
		if !strings.HasPrefix(line, "#") {
			t.Fatalf("guidance line %q is not a comment", line)
		}
	}
	for _, want := range []string{"CLUSTER_NAME", "OTHER_NODE", pass, "--cluster-name"} {
		if !strings.Contains(guide, want) {
			t.Errorf("guidance lacks %q", want)
		}
	}

	for name, s := range map[string]authcallout.ClusterSettings{
		"half the TLS files": {Name: "c", TLSCert: "a.pem", TLSKey: "a-key.pem"},
		"bad route":          {Name: "c", Routes: []string{"nats://h:1"}},
		"name with a space":  {Name: "a b"},
		"port out of range":  {Name: "c", Port: 70000},
	} {
		if _, err := authcallout.NATSClusterConfig(k, s); !errors.Is(err, authcallout.ErrConfigValidation) {
			t.Errorf("%s: err = %v, want ErrConfigValidation", name, err)
		}
	}
}
