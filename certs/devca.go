package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Names of the files that WriteDevCA writes.
const (
	devCACertName     = "ca.pem"
	devCAKeyName      = "ca-key.pem"
	devServerCertName = "server.pem"
	devServerKeyName  = "server-key.pem"
)

// devValidity is how long development certificates stay valid.
const devValidity = 365 * 24 * time.Hour

// Files are the paths of the PEM files that [WriteDevCA] writes.
type Files struct {
	// CACert is the CA certificate (ca.pem): give it to clients.
	CACert string
	// CAKey is the CA private key (ca-key.pem, mode 0600).
	CAKey string
	// ServerCert is the server certificate signed by the CA (server.pem).
	ServerCert string
	// ServerKey is the server private key (server-key.pem, mode 0600).
	ServerKey string
}

// DefaultDevHosts are the host names and IP addresses a development
// server certificate is valid for when WriteDevCA gets none.
func DefaultDevHosts() []string {
	return []string{"localhost", "127.0.0.1", "::1"}
}

// WriteDevCA writes a throwaway development PKI into dir, creating it with
// mode 0700 if needed: a self-signed ECDSA P-256 CA (ca.pem, ca-key.pem)
// and a server certificate signed by it (server.pem, server-key.pem) for
// hosts, which are DNS names or IP addresses ([DefaultDevHosts] if
// empty). The certificates are valid for one year; the server certificate
// may also serve as a client certificate (for nats-server routes). Keys
// are PKCS #8 with mode 0600.
//
// WriteDevCA never overwrites: if any of the four files exists it writes
// nothing and fails with an error that matches [io/fs.ErrExist]. If it
// fails part way, it removes the files it wrote.
//
// Do not use these certificates in production: the CA key sits next to
// the certificates and nothing revokes them.
func WriteDevCA(dir string, hosts []string) (Files, error) {
	if len(hosts) == 0 {
		hosts = DefaultDevHosts()
	}
	files := Files{
		CACert:     filepath.Join(dir, devCACertName),
		CAKey:      filepath.Join(dir, devCAKeyName),
		ServerCert: filepath.Join(dir, devServerCertName),
		ServerKey:  filepath.Join(dir, devServerKeyName),
	}
	pems, err := devPKI(hosts, time.Now())
	if err != nil {
		return Files{}, fmt.Errorf("write dev CA: %w", err)
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Files{}, fmt.Errorf("write dev CA: %w", err)
	}
	outputs := []struct {
		path string
		data []byte
		mode fs.FileMode
	}{
		{files.CACert, pems.caCert, 0o644},
		{files.CAKey, pems.caKey, 0o600},
		{files.ServerCert, pems.serverCert, 0o644},
		{files.ServerKey, pems.serverKey, 0o600},
	}
	for _, o := range outputs {
		if _, err := os.Lstat(o.path); err == nil {
			return Files{}, fmt.Errorf("write dev CA: %w", &fs.PathError{Op: "create", Path: o.path, Err: fs.ErrExist})
		}
	}
	var written []string
	for _, o := range outputs {
		if err := writeNew(o.path, o.data, o.mode); err != nil {
			for _, p := range written {
				os.Remove(p)
			}
			return Files{}, fmt.Errorf("write dev CA: %w", err)
		}
		written = append(written, o.path)
	}
	return files, nil
}

// devPEMs are the PEM encodings of a development PKI.
type devPEMs struct {
	caCert, caKey, serverCert, serverKey []byte
}

// devPKI makes a CA and a server certificate for hosts, valid from now.
func devPKI(hosts []string, now time.Time) (devPEMs, error) {
	var dnsNames []string
	var ips []net.IP
	for _, h := range hosts {
		switch ip := net.ParseIP(h); {
		case ip != nil:
			ips = append(ips, ip)
		case h == "" || strings.ContainsAny(h, ":/@ "):
			return devPEMs{}, fmt.Errorf("make server certificate: invalid host %q: want a DNS name or an IP address, without port", h)
		default:
			dnsNames = append(dnsNames, h)
		}
	}

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return devPEMs{}, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"unibus"}, CommonName: "unibus development CA"},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew
		NotAfter:              now.Add(devValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := createCert(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return devPEMs{}, fmt.Errorf("make CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return devPEMs{}, fmt.Errorf("parse CA certificate: %w", err)
	}

	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return devPEMs{}, fmt.Errorf("generate server key: %w", err)
	}
	serverTmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"unibus"}, CommonName: hosts[0]},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(devValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}
	serverDER, err := createCert(serverTmpl, caCert, &serverKey.PublicKey, caKey)
	if err != nil {
		return devPEMs{}, fmt.Errorf("make server certificate: %w", err)
	}

	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return devPEMs{}, fmt.Errorf("encode CA key: %w", err)
	}
	serverKeyPEM, err := keyPEM(serverKey)
	if err != nil {
		return devPEMs{}, fmt.Errorf("encode server key: %w", err)
	}
	return devPEMs{
		caCert:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		caKey:      caKeyPEM,
		serverCert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverDER}),
		serverKey:  serverKeyPEM,
	}, nil
}

// createCert signs tmpl with a random 128-bit serial number.
func createCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
}

func keyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeNew writes data to a new file at path with mode perm (before the
// umask, except that private keys get exactly 0600).
func writeNew(path string, data []byte, perm fs.FileMode) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if perm&0o077 == 0 {
		if err := f.Chmod(perm); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Sync()
}
