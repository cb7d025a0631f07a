package client

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
)

// Plaintext beyond loopback.
//
// A connection without TLS can be read and rewritten by anyone on the
// path: they see every subject and reply, can delay or drop anything, and
// can relay the server's login nonce and the client's answer to log in as
// the client. Frames stay sealed and signed end to end, but a bus reached
// that way is the attacker's as much as the user's. So Connect refuses a
// plaintext URL (nats://, ws:// or no scheme) whose host is not a
// loopback address unless the caller opts in with WithInsecure; TLS URLs
// (tls://, wss://) and a pinned CA (WithCA, which requires them) are
// always fine. The same rule holds for servers the client learns from the
// cluster (INFO connect_urls), which nats.go dials on reconnect: while the
// connection is plaintext and WithInsecure is not given, Connect's dialer
// refuses any address that is not loopback.

// checkURLs checks the comma-separated server URLs, as nats.go takes them,
// of a client that has not opted into plaintext beyond loopback: every
// plaintext URL must name a loopback host. It returns whether any URL uses
// TLS (which nats.go then uses for every server of the pool). An empty
// entry is skipped, as nats.go does; an empty list means nats.go's default
// nats://127.0.0.1:4222.
func checkURLs(urls string) (anyTLS bool, err error) {
	entries := strings.Split(urls, ",")
	for i, s := range entries {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		u, perr := url.Parse(s)
		if perr != nil {
			continue // nats.go parses it the same way and fails
		}
		switch u.Scheme {
		case "tls", "wss":
			anyTLS = true
			continue
		}
		if isLoopbackHost(u.Hostname()) {
			continue
		}
		where := ""
		if len(entries) > 1 {
			where = fmt.Sprintf(" (server %d of %d)", i+1, len(entries))
		}
		// Never print the user info of the URL: it may hold a password.
		return anyTLS, fmt.Errorf("%w: %s://%s%s: %s is not a loopback address; "+
			"use tls:// (client.WithCA pins the server's CA), or allow plaintext explicitly with client.WithInsecure()",
			ErrInsecureURL, u.Scheme, u.Host, where, quoteHost(u.Hostname()))
	}
	return anyTLS, nil
}

// quoteHost names host in a message; an empty host is spelled out.
func quoteHost(host string) string {
	if host == "" {
		return "the empty host"
	}
	return host
}

// isLoopbackHost reports whether host, a URL's host name without port or
// brackets, is localhost or a loopback IP address (127.0.0.0/8, ::1).
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackDialer dials only loopback addresses, through next. nats.go
// hands it each address it connects to, resolved to an IP when it could
// resolve the host, so it holds servers learned from the cluster to the
// rule that Connect holds the given URLs to.
type loopbackDialer struct {
	next nats.CustomDialer
}

// Dial implements nats.CustomDialer.
func (d loopbackDialer) Dial(network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("%w: dial %s: %w", ErrInsecureURL, address, err)
	}
	if !isLoopbackHost(host) {
		return nil, fmt.Errorf("%w: %s, a server the cluster announced, is not on a loopback address; "+
			"use tls://, or allow plaintext explicitly with client.WithInsecure()", ErrInsecureURL, address)
	}
	return d.next.Dial(network, address)
}

// SkipTLSHandshake passes on what next says, for nats.go, which asks a
// custom dialer whether it already did the TLS handshake.
func (d loopbackDialer) SkipTLSHandshake() bool {
	s, ok := d.next.(interface{ SkipTLSHandshake() bool })
	return ok && s.SkipTLSHandshake()
}

// transportOptions returns the nats.go options that hold the connection to
// the plaintext rule above, given base, the options Connect passes
// otherwise. It applies base to nats.go's defaults to learn what nats.go
// will do: options that force TLS (nats.Secure, nats.RootCAs, …) make
// every connection TLS, and an in-process connection uses no network.
func transportOptions(urls string, insecure bool, base []nats.Option) ([]nats.Option, error) {
	probe := nats.GetDefaultOptions()
	for _, opt := range base {
		if err := opt(&probe); err != nil {
			return nil, err
		}
	}
	if insecure || probe.Secure || probe.TLSHandshakeFirst || probe.InProcessServer != nil {
		return nil, nil
	}
	anyTLS, err := checkURLs(urls)
	if err != nil {
		return nil, err
	}
	if anyTLS {
		// nats.go then uses TLS for every server, announced ones too, and
		// fails where a server offers none (nats.ErrSecureConnWanted).
		return nil, nil
	}
	// Dial as nats.go would have: through the caller's custom dialer, or a
	// net.Dialer like nats.go's default (a copy of the caller's, its
	// timeout and multipath setting kept).
	next := probe.CustomDialer
	if next == nil {
		d := &net.Dialer{Timeout: probe.Timeout}
		if probe.Dialer != nil {
			c := *probe.Dialer
			d = &c
		}
		if probe.AllowMultipathTCP != nil {
			d.SetMultipathTCP(*probe.AllowMultipathTCP)
		}
		next = d
	}
	return []nats.Option{nats.SetCustomDialer(loopbackDialer{next: next})}, nil
}
