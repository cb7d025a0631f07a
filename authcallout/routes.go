package authcallout

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/nats-io/nkeys"
)

// RouteUser is the user every node of a deployment presents on its cluster
// routes, and the only one it accepts on them.
const RouteUser = "unibus-route"

// routePasswordContext is the HMAC message that derives the route password
// from the issuer's seed: a new version of the derivation gets a new
// context, so that no two derivations ever share an output.
const routePasswordContext = "unibus-route-v1"

// DefaultRoutePort is the NATS cluster port that NATSClusterConfig listens
// on when ClusterSettings.Port is zero.
const DefaultRoutePort = 6222

// RouteTLSTimeout bounds, in seconds, the TLS handshake of a route in the
// configuration NATSClusterConfig prints: longer than nats-server's 2 s
// default, so that a loaded node does not drop a legitimate route (the
// same as embedded.RouteTLSTimeout for in-process nodes).
const RouteTLSTimeout = 5

// RouteCredentials returns the user name and password that authorize
// cluster routes between the nodes of the deployment these keys belong to.
//
// Without route authorization any process that reaches a cluster port
// joins as a route, sees every account's traffic and publishes into any
// account. The credentials are derived from the deployment keys, so every
// node that shares the credentials file agrees on them with no new secret
// to distribute: the password is base64url(HMAC-SHA256(key: the issuer's
// raw seed, message: "unibus-route-v1")). It is as secret as the file, and
// the same on every call.
func (k Keys) RouteCredentials() (user, password string, err error) {
	if k.Issuer == nil {
		return "", "", fmt.Errorf("%w: derive route credentials: the issuer key is missing", ErrConfigValidation)
	}
	// Seed returns the key pair's own buffer: not cleared here.
	seed, err := k.Issuer.Seed()
	if err != nil {
		return "", "", fmt.Errorf("derive route credentials: %w", err)
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return "", "", fmt.Errorf("derive route credentials: %w", err)
	}
	defer clear(raw)
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte(routePasswordContext))
	return RouteUser, base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

// ClusterSettings fill in the cluster block that NATSClusterConfig prints
// for an operator's nats-servers.
type ClusterSettings struct {
	// Name is the cluster name, the same on every node. Empty prints the
	// whole block commented out, with placeholders, as guidance.
	Name string
	// Host is where the node listens for routes; empty means 0.0.0.0.
	Host string
	// Port is the route port; zero means DefaultRoutePort.
	Port int
	// Routes are the route addresses of the nodes (host:port or
	// nats-route://host:port, without credentials): the route credentials
	// are added to each. A node ignores a route to itself, so every node
	// may be given the same list.
	Routes []string
	// TLSCert, TLSKey and TLSCA are the PEM files, on the servers, of
	// mutual route TLS: each node presents its certificate (valid for
	// both server and client authentication) and verifies its peers'
	// against the deployment CA. All three or none; none prints a
	// commented tls block to fill in.
	TLSCert, TLSKey, TLSCA string
}

// valid checks the settings.
func (s ClusterSettings) valid() error {
	if strings.ContainsAny(s.Name, " \t\n\"") {
		return fmt.Errorf("%w: cluster name %q may not contain spaces or quotes", ErrConfigValidation, s.Name)
	}
	if s.Port < 0 || s.Port > 65535 {
		return fmt.Errorf("%w: cluster port %d out of range", ErrConfigValidation, s.Port)
	}
	set := 0
	for _, f := range []string{s.TLSCert, s.TLSKey, s.TLSCA} {
		if strings.ContainsAny(f, "\"\n") {
			return fmt.Errorf("%w: TLS file name %q may not contain quotes or newlines", ErrConfigValidation, f)
		}
		if f != "" {
			set++
		}
	}
	if set != 0 && set != 3 {
		return fmt.Errorf("%w: route TLS needs a certificate, its key and the CA, all three", ErrConfigValidation)
	}
	return nil
}

// RouteURL returns the route URL of addr (host:port, or a nats-route://
// URL without credentials) with user and password as its credentials: a
// soliciting nats-server presents only the credentials in the URLs of its
// configured routes.
func RouteURL(addr, user, password string) (string, error) {
	raw := addr
	if !strings.Contains(raw, "://") {
		raw = "nats-route://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%w: route %q: %w", ErrConfigValidation, addr, err)
	}
	switch {
	case u.Scheme != "nats-route":
		return "", fmt.Errorf("%w: route %q: want host:port or nats-route://host:port", ErrConfigValidation, addr)
	case u.User != nil:
		return "", fmt.Errorf("%w: route %q carries credentials: give the address alone, the route credentials are added", ErrConfigValidation, addr)
	case u.Hostname() == "" || u.Port() == "":
		return "", fmt.Errorf("%w: route %q needs a host and a port", ErrConfigValidation, addr)
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%w: route %q: want host:port or nats-route://host:port", ErrConfigValidation, addr)
	}
	u.User = url.UserPassword(user, password)
	u.Path = ""
	return u.String(), nil
}

// NATSClusterConfig returns the cluster block of a nats-server
// configuration for the nodes of the deployment k belongs to: route
// authorization with RouteCredentials, routes that present them, and
// mutual TLS with the deployment CA when s names the files (a commented
// tls block otherwise). With no s.Name the whole block is printed
// commented out, with placeholders, for an operator to fill in.
//
// The text holds the route password: it is as secret as the credentials
// file.
func NATSClusterConfig(k Keys, s ClusterSettings) (string, error) {
	if err := k.valid(); err != nil {
		return "", err
	}
	if err := s.valid(); err != nil {
		return "", err
	}
	user, password, err := k.RouteCredentials()
	if err != nil {
		return "", err
	}
	guidance := s.Name == ""
	name, host, port := s.Name, s.Host, s.Port
	if guidance {
		name = "CLUSTER_NAME"
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if port == 0 {
		port = DefaultRoutePort
	}
	routes := s.Routes
	if guidance && len(routes) == 0 {
		routes = []string{net.JoinHostPort("OTHER_NODE", strconv.Itoa(port))}
	}
	var lines []string
	add := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	add("cluster {")
	add("  name: %q", name)
	add("  listen: %q", net.JoinHostPort(host, strconv.Itoa(port)))
	add("  # Only routes that present these credentials join (identical on every node).")
	add("  authorization {")
	add("    user: %q", user)
	add("    password: %q", password)
	add("  }")
	if len(routes) > 0 {
		add("  # The nodes' routes (a node skips its own), carrying the credentials.")
		add("  routes: [")
		for _, r := range routes {
			ru, err := RouteURL(r, user, password)
			if err != nil {
				return "", err
			}
			add("    %q", ru)
		}
		add("  ]")
	}
	tlsPrefix := ""
	if s.TLSCert == "" {
		add("  # Routes beyond loopback need mutual TLS with the deployment CA: each")
		add("  # node's certificate valid for server and client authentication and")
		add("  # for the addresses the others reach it at (unibusd dev-certs makes a")
		add("  # test CA). Uncomment and fill in, or rerun with --cluster-tls-cert,")
		add("  # --cluster-tls-key and --cluster-ca.")
		tlsPrefix = "# "
	}
	cert, key, ca := cmp.Or(s.TLSCert, "/etc/unibus/route.pem"), cmp.Or(s.TLSKey, "/etc/unibus/route-key.pem"), cmp.Or(s.TLSCA, "/etc/unibus/ca.pem")
	add("  %stls {", tlsPrefix)
	add("  %s  cert_file: %q", tlsPrefix, cert)
	add("  %s  key_file: %q", tlsPrefix, key)
	add("  %s  ca_file: %q", tlsPrefix, ca)
	add("  %s  verify: true", tlsPrefix)
	add("  %s  timeout: %d", tlsPrefix, RouteTLSTimeout)
	add("  %s}", tlsPrefix)
	add("}")

	var b strings.Builder
	b.WriteString("# unibus: cluster routes (generated from the deployment credentials; the\n")
	b.WriteString("# password is secret). Without route authorization any process that reaches\n")
	b.WriteString("# the cluster port joins as a route, reads every account and writes into it.\n")
	if guidance {
		b.WriteString("# For a cluster of your own nats-servers, put this block in each server's\n")
		b.WriteString("# configuration, uncommented and filled in (CLUSTER_NAME, OTHER_NODE), or\n")
		b.WriteString("# rerun with --cluster-name NAME --routes HOST:PORT,... to have it filled in.\n")
	}
	for _, l := range lines {
		if guidance {
			b.WriteString("# ")
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String(), nil
}
