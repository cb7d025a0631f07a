// Package exitcode is the one list of the command-line programs' exit
// codes (unibus, unibusd, worker) and the one mapping from an error to its
// code, so that scripts see the same code for the same failure whichever
// program they run.
package exitcode

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"net"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/identity"
)

// The exit codes.
const (
	OK          = 0
	Error       = 1
	Usage       = 2   // bad flags or arguments, or a setting refused as unsafe
	Refused     = 3   // the bus or a service refused the caller
	NotFound    = 4   // no such user, room or blob
	Conflict    = 5   // it exists already, or changed meanwhile
	Unavailable = 69  // sysexits.h EX_UNAVAILABLE: no server, no service, no answer in time
	Interrupted = 130 // SIGINT or SIGTERM
)

// ErrUsage marks errors caused by bad command-line input: Of maps it to
// Usage.
var ErrUsage = errors.New("usage")

// Of maps err to its exit code.
func Of(err error) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return OK
	case errors.Is(err, ErrUsage), errors.Is(err, certs.ErrPlaintextURL), errors.Is(err, client.ErrInsecureURL):
		return Usage
	case errors.Is(err, context.Canceled):
		return Interrupted
	case IsRefused(err):
		return Refused
	case errors.Is(err, client.ErrNotFound):
		return NotFound
	case errors.Is(err, client.ErrConflict), errors.Is(err, identity.ErrExists):
		return Conflict
	case IsBadCertificate(err):
		return Error // the configuration's fault (--ca), not the server's
	case isUnavailable(err):
		return Unavailable
	default:
		return Error
	}
}

// IsRefused reports whether the bus or a service refused the caller: the
// server's authorization (the callout), a permission, or a 401 or 403.
func IsRefused(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) ||
		errors.Is(err, nats.ErrAuthRevoked) ||
		errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, client.ErrUnauthenticated) ||
		errors.Is(err, client.ErrForbidden) ||
		errors.Is(err, nats.ErrPermissionViolation)
}

// isUnavailable: no server, no service, or no answer in time.
func isUnavailable(err error) bool {
	var (
		opErr  *net.OpError
		dnsErr *net.DNSError
	)
	return errors.Is(err, client.ErrUnavailable) ||
		errors.Is(err, client.ErrTooManyRequests) ||
		errors.Is(err, client.ErrConnect) ||
		errors.Is(err, nats.ErrNoServers) ||
		errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &dnsErr) ||
		errors.As(err, &opErr)
}

// IsBadCertificate reports whether a TLS handshake failed on the server's
// certificate.
func IsBadCertificate(err error) bool {
	var verr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	return errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr)
}
