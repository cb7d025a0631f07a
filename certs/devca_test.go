package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("%s does not hold exactly one PEM certificate", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return cert
}

func readKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("%s does not hold a PKCS #8 PEM key", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		t.Fatalf("%s holds %T, want an ECDSA P-256 key", path, key)
	}
	return ec
}

func TestWriteDevCA(t *testing.T) {
	start := time.Now()
	dir := filepath.Join(t.TempDir(), "new", "pki")
	files, err := WriteDevCA(dir, nil)
	if err != nil {
		t.Fatalf("WriteDevCA: %v", err)
	}
	want := Files{
		CACert:     filepath.Join(dir, "ca.pem"),
		CAKey:      filepath.Join(dir, "ca-key.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
	}
	if files != want {
		t.Fatalf("Files = %+v, want %+v", files, want)
	}

	if runtime.GOOS != "windows" {
		for _, key := range []string{files.CAKey, files.ServerKey} {
			info, err := os.Stat(key)
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Mode().Perm(); got != 0o600 {
				t.Errorf("mode of %s = %04o, want 0600", key, got)
			}
		}
	}

	ca := readCert(t, files.CACert)
	caKey := readKey(t, files.CAKey)
	server := readCert(t, files.ServerCert)
	serverKey := readKey(t, files.ServerKey)

	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate is not a CA")
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if !caKey.PublicKey.Equal(ca.PublicKey) {
		t.Errorf("ca-key.pem does not match ca.pem")
	}
	if server.IsCA {
		t.Errorf("server certificate is a CA")
	}
	if err := server.CheckSignatureFrom(ca); err != nil {
		t.Errorf("server certificate is not signed by the CA: %v", err)
	}
	if !serverKey.PublicKey.Equal(server.PublicKey) {
		t.Errorf("server-key.pem does not match server.pem")
	}
	if server.SerialNumber.Cmp(ca.SerialNumber) == 0 {
		t.Errorf("CA and server share a serial number")
	}
	if !slices.Equal(server.DNSNames, []string{"localhost"}) {
		t.Errorf("DNSNames = %v, want [localhost]", server.DNSNames)
	}
	wantIPs := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	if !slices.EqualFunc(server.IPAddresses, wantIPs, net.IP.Equal) {
		t.Errorf("IPAddresses = %v, want %v", server.IPAddresses, wantIPs)
	}
	if !slices.Contains(server.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
		t.Errorf("server certificate lacks the server auth usage")
	}
	// nats-server routes present it as a client too (RouteConfig).
	if !slices.Contains(server.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		t.Errorf("server certificate lacks the client auth usage that routes need")
	}

	for _, c := range []*x509.Certificate{ca, server} {
		if c.NotBefore.After(start) {
			t.Errorf("%s: NotBefore %v is after its creation", c.Subject, c.NotBefore)
		}
		// One year, give or take the clock-skew allowance.
		if got := c.NotAfter.Sub(start); got < 364*24*time.Hour || got > 366*24*time.Hour {
			t.Errorf("%s: valid for %v from now, want about a year", c.Subject, got)
		}
	}
	if server.NotAfter.After(ca.NotAfter) {
		t.Errorf("server certificate outlives its CA")
	}
}

func TestWriteDevCARefusesToOverwrite(t *testing.T) {
	for _, existing := range []string{"ca.pem", "ca-key.pem", "server.pem", "server-key.pem"} {
		t.Run(existing, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, existing)
			original := []byte("keep me\n")
			if err := os.WriteFile(path, original, 0o600); err != nil {
				t.Fatal(err)
			}

			files, err := WriteDevCA(dir, nil)
			if !errors.Is(err, fs.ErrExist) {
				t.Fatalf("WriteDevCA error = %v, want fs.ErrExist", err)
			}
			if files != (Files{}) {
				t.Errorf("Files = %+v on error, want zero", files)
			}
			content, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(content, original) {
				t.Errorf("%s was overwritten", existing)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Errorf("dir holds %d entries, want only the existing file", len(entries))
			}
		})
	}
}

func TestWriteDevCAInvalidHost(t *testing.T) {
	for _, host := range []string{"", "localhost:4222", "tls://localhost", "a b"} {
		t.Run(host, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			if _, err := WriteDevCA(dir, []string{"localhost", host}); err == nil {
				t.Fatalf("WriteDevCA accepted host %q", host)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("WriteDevCA created %s for an invalid host (stat: %v)", dir, err)
			}
		})
	}
}
