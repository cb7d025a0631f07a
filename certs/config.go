package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// ClientConfig returns a client TLS configuration that trusts only the CA
// certificates in the PEM file caFile, not the system roots, and requires
// TLS 1.2 or later. ServerName is left empty for the caller (nats.go sets
// it from the server URL).
//
// A missing file gives an error that matches [io/fs.ErrNotExist] and names
// the path; a file without PEM certificates gives [ErrNoCertificates].
func ClientConfig(caFile string) (*tls.Config, error) {
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		RootCAs:    pool,
		MinVersion: tls.VersionTLS12,
	}, nil
}

// loadPool returns a pool of the certificates in the PEM file path.
func loadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("load CA: parse certificate %d in %s: %w", n+1, path, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("load CA: %w in %s", ErrNoCertificates, path)
	}
	return pool, nil
}

// ServerConfig returns a server TLS configuration that presents the
// certificate chain in certFile with the private key in keyFile (both
// PEM) and requires TLS 1.2 or later.
func ServerConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load key pair %s, %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// RouteConfig returns the mutual TLS configuration of nats-server cluster
// routes, where every node is both a server (accepting routes) and a
// client (soliciting them): it presents the certificate chain in certFile
// with the key in keyFile, and requires and verifies the peer's
// certificate against the CA certificates in caFile only (not the system
// roots), whichever side opened the connection. TLS 1.2 or later.
//
// The certificate must be signed by a CA of caFile and be valid for both
// server and client authentication (as [WriteDevCA]'s server certificate
// is); otherwise RouteConfig fails, naming the file, rather than let every
// route handshake fail later.
func RouteConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load route key pair %s, %s: %w", certFile, keyFile, err)
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("load route CA: %w", err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse route certificate %s: %w", certFile, err)
		}
	}
	intermediates := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse route certificate chain %s: %w", certFile, err)
		}
		intermediates.AddCert(c)
	}
	for _, usage := range []struct {
		eku  x509.ExtKeyUsage
		name string
	}{{x509.ExtKeyUsageServerAuth, "server"}, {x509.ExtKeyUsageClientAuth, "client"}} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{usage.eku}})
		if err != nil {
			return nil, fmt.Errorf("route certificate %s is not valid for %s authentication with the CA %s (a node presents it both ways): %w", certFile, usage.name, caFile, err)
		}
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
