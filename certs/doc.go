// Package certs builds the TLS configurations of unibus clients and
// servers and writes throwaway development certificates.
//
// A client given a CA file trusts only that CA ([ClientConfig]) and
// refuses plaintext server URLs ([RequireTLSURL]), so that pinning a CA
// never silently falls back to an unencrypted connection. [WriteDevCA]
// writes a self-signed CA and a server certificate for local development.
package certs
