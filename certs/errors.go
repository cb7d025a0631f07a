package certs

import "errors"

var (
	// ErrNoCertificates reports a CA file that holds no PEM certificate.
	ErrNoCertificates = errors.New("no PEM certificates")

	// ErrPlaintextURL reports a server URL that does not use TLS, given to
	// a client that pins a CA.
	ErrPlaintextURL = errors.New("refusing plaintext URL")
)
