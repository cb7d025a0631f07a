package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeDevCA writes a development PKI for hosts into a new temporary
// directory.
func writeDevCA(t *testing.T, hosts []string) Files {
	t.Helper()
	files, err := WriteDevCA(filepath.Join(t.TempDir(), "pki"), hosts)
	if err != nil {
		t.Fatalf("WriteDevCA: %v", err)
	}
	return files
}

func clientConfig(t *testing.T, caFile string) *tls.Config {
	t.Helper()
	cfg, err := ClientConfig(caFile)
	if err != nil {
		t.Fatalf("ClientConfig: %v", err)
	}
	return cfg
}

func serverConfig(t *testing.T, files Files) *tls.Config {
	t.Helper()
	cfg, err := ServerConfig(files.ServerCert, files.ServerKey)
	if err != nil {
		t.Fatalf("ServerConfig: %v", err)
	}
	return cfg
}

// handshake runs a TLS handshake over loopback TCP between a server with
// serverCfg and a client with clientCfg that expects serverName, and
// returns each side's error.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config, serverName string) (clientErr, serverErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()

	serverDone := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			serverDone <- err
			return
		}
		defer conn.Close()
		serverDone <- tls.Server(conn, serverCfg).HandshakeContext(ctx)
	}()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	cfg := clientCfg.Clone()
	cfg.ServerName = serverName
	clientErr = tls.Client(conn, cfg).HandshakeContext(ctx)
	conn.Close() // unblocks the server if the client gave up
	return clientErr, <-serverDone
}

func TestHandshake(t *testing.T) {
	files := writeDevCA(t, nil)
	other := writeDevCA(t, nil)
	custom := writeDevCA(t, []string{"nats.test", "10.1.2.3"})

	tests := []struct {
		name       string
		server     Files
		ca         string
		serverName string
		wantErr    any // nil, or a pointer to the x509 error type the client gets
	}{
		{name: "localhost", server: files, ca: files.CACert, serverName: "localhost"},
		{name: "IPv4 loopback", server: files, ca: files.CACert, serverName: "127.0.0.1"},
		{name: "IPv6 loopback", server: files, ca: files.CACert, serverName: "::1"},
		{name: "custom DNS name", server: custom, ca: custom.CACert, serverName: "nats.test"},
		{name: "custom IP", server: custom, ca: custom.CACert, serverName: "10.1.2.3"},
		{name: "other CA", server: files, ca: other.CACert, serverName: "localhost", wantErr: new(x509.UnknownAuthorityError)},
		{name: "wrong host", server: files, ca: files.CACert, serverName: "example.com", wantErr: new(x509.HostnameError)},
		{name: "host not in custom list", server: custom, ca: custom.CACert, serverName: "localhost", wantErr: new(x509.HostnameError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clientErr, serverErr := handshake(t, serverConfig(t, tt.server), clientConfig(t, tt.ca), tt.serverName)
			if tt.wantErr == nil {
				if clientErr != nil || serverErr != nil {
					t.Fatalf("handshake failed: client: %v; server: %v", clientErr, serverErr)
				}
				return
			}
			if !errors.As(clientErr, tt.wantErr) {
				t.Errorf("client error = %v, want %T", clientErr, tt.wantErr)
			}
			if serverErr == nil {
				t.Errorf("server completed a handshake that the client refused")
			}
		})
	}
}

func TestClientConfigTrustsOnlyTheCA(t *testing.T) {
	files := writeDevCA(t, nil)
	cfg := clientConfig(t, files.CACert)

	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
	}
	if cfg.RootCAs == nil {
		t.Fatal("RootCAs is nil, which means the system roots")
	}
	data, err := os.ReadFile(files.CACert)
	if err != nil {
		t.Fatal(err)
	}
	want := x509.NewCertPool()
	if !want.AppendCertsFromPEM(data) {
		t.Fatal("no certificate in ca.pem")
	}
	if !cfg.RootCAs.Equal(want) {
		t.Errorf("RootCAs holds more than the CA")
	}
	if cfg.InsecureSkipVerify {
		t.Errorf("InsecureSkipVerify is set")
	}
}

func TestClientConfigBundle(t *testing.T) {
	a := writeDevCA(t, nil)
	b := writeDevCA(t, nil)
	var bundle []byte
	for _, f := range []string{a.CACert, b.CAKey, b.CACert} { // a key block in between is skipped
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bundle = append(bundle, data...)
	}
	path := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(path, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := clientConfig(t, path)
	for _, server := range []Files{a, b} {
		if cerr, serr := handshake(t, serverConfig(t, server), cfg, "localhost"); cerr != nil || serr != nil {
			t.Errorf("handshake with a CA of the bundle: client: %v; server: %v", cerr, serr)
		}
	}
}

func TestClientConfigErrors(t *testing.T) {
	files := writeDevCA(t, nil)
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	corrupt := "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHBfpE=\n-----END CERTIFICATE-----\n"

	tests := []struct {
		name    string
		path    string
		want    error // nil: any error but ErrNoCertificates
		wantMsg string
	}{
		{name: "missing", path: filepath.Join(dir, "nope.pem"), want: fs.ErrNotExist},
		{name: "empty", path: write("empty.pem", ""), want: ErrNoCertificates},
		{name: "not PEM", path: write("text.pem", "hello\n"), want: ErrNoCertificates},
		{name: "key only", path: files.CAKey, want: ErrNoCertificates},
		{name: "corrupt certificate", path: write("corrupt.pem", corrupt), wantMsg: "parse certificate 1"},
		{name: "directory", path: dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ClientConfig(tt.path)
			if err == nil {
				t.Fatalf("ClientConfig succeeded: %+v", cfg)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
			if tt.want == nil && errors.Is(err, ErrNoCertificates) {
				t.Errorf("error = %v, want another error than ErrNoCertificates", err)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name the file", err)
			}
			if tt.want == ErrNoCertificates && !strings.Contains(err.Error(), "no PEM certificates in "+tt.path) {
				t.Errorf("error %q, want it to say \"no PEM certificates in %s\"", err, tt.path)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestServerConfig(t *testing.T) {
	files := writeDevCA(t, nil)
	cfg := serverConfig(t, files)
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", cfg.MinVersion)
	}
	if len(cfg.Certificates) != 1 {
		t.Fatalf("got %d certificates, want 1", len(cfg.Certificates))
	}
}

func TestServerConfigErrors(t *testing.T) {
	files := writeDevCA(t, nil)
	missing := filepath.Join(t.TempDir(), "nope.pem")
	tests := []struct {
		name      string
		cert, key string
		want      error // nil: any error
	}{
		{name: "missing cert", cert: missing, key: files.ServerKey, want: fs.ErrNotExist},
		{name: "missing key", cert: files.ServerCert, key: missing, want: fs.ErrNotExist},
		{name: "key of another certificate", cert: files.ServerCert, key: files.CAKey},
		{name: "swapped", cert: files.ServerKey, key: files.ServerCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ServerConfig(tt.cert, tt.key)
			if err == nil {
				t.Fatal("ServerConfig succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.cert) || !strings.Contains(err.Error(), tt.key) {
				t.Errorf("error %q does not name both files", err)
			}
		})
	}
}

func routeConfig(t *testing.T, files Files) *tls.Config {
	t.Helper()
	cfg, err := RouteConfig(files.ServerCert, files.ServerKey, files.CACert)
	if err != nil {
		t.Fatalf("RouteConfig: %v", err)
	}
	return cfg
}

// TestRouteConfigMutual: two nodes with certificates of the deployment CA
// complete a route handshake either way round; a peer whose certificate
// another CA signed, or that presents none, is refused by the accepting
// node, and a node refuses to solicit one.
func TestRouteConfigMutual(t *testing.T) {
	pki := writeDevCA(t, nil)
	other := writeDevCA(t, nil)
	node := routeConfig(t, pki)
	if node.ClientAuth != tls.RequireAndVerifyClientCert || node.RootCAs == nil || node.ClientCAs == nil || node.InsecureSkipVerify {
		t.Fatalf("route TLS is not mutual with the CA: %+v", node)
	}
	if node.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x, want TLS 1.2", node.MinVersion)
	}
	if cerr, serr := handshake(t, node, routeConfig(t, pki), "127.0.0.1"); cerr != nil || serr != nil {
		t.Fatalf("route handshake between two nodes: client: %v; server: %v", cerr, serr)
	}

	// A rogue with its own CA solicits a node: the node refuses it.
	rogue := routeConfig(t, other)
	rogue.RootCAs = node.RootCAs // it even trusts the node
	if _, serr := handshake(t, node, rogue, "127.0.0.1"); serr == nil {
		t.Fatal("a node accepted a route whose certificate another CA signed")
	}
	// A rogue with no certificate at all.
	if _, serr := handshake(t, node, clientConfig(t, pki.CACert), "127.0.0.1"); serr == nil {
		t.Fatal("a node accepted a route without a client certificate")
	}
	// A node soliciting a rogue refuses the rogue's certificate.
	if cerr, _ := handshake(t, routeConfig(t, other), node, "127.0.0.1"); !errors.As(cerr, new(x509.UnknownAuthorityError)) {
		t.Fatalf("a node soliciting a rogue: client error %v, want an unknown authority", cerr)
	}
}

// writeLeaf writes a certificate signed by the CA of pki with the given
// extended key usages, and its key, and returns their paths.
func writeLeaf(t *testing.T, pki Files, usages ...x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	ca, caKey := readCert(t, pki.CACert), readKey(t, pki.CAKey)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := createCert(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: usages,
		DNSNames:    []string{"localhost"},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := keyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "leaf.pem"), filepath.Join(dir, "leaf-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestRouteConfigErrors(t *testing.T) {
	pki := writeDevCA(t, nil)
	other := writeDevCA(t, nil)
	missing := filepath.Join(t.TempDir(), "nope.pem")
	serverOnly, serverOnlyKey := writeLeaf(t, pki, x509.ExtKeyUsageServerAuth)
	clientOnly, clientOnlyKey := writeLeaf(t, pki, x509.ExtKeyUsageClientAuth)
	both, bothKey := writeLeaf(t, pki, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if _, err := RouteConfig(both, bothKey, pki.CACert); err != nil {
		t.Fatalf("a certificate for both usages: %v", err)
	}
	tests := []struct {
		name          string
		cert, key, ca string
		want          error  // nil: any error
		names         string // a file the message must name
		msg           string
	}{
		{name: "missing cert", cert: missing, key: pki.ServerKey, ca: pki.CACert, want: fs.ErrNotExist, names: missing},
		{name: "missing key", cert: pki.ServerCert, key: missing, ca: pki.CACert, want: fs.ErrNotExist, names: missing},
		{name: "missing CA", cert: pki.ServerCert, key: pki.ServerKey, ca: missing, want: fs.ErrNotExist, names: missing},
		{name: "CA file without certificates", cert: pki.ServerCert, key: pki.ServerKey, ca: pki.CAKey, want: ErrNoCertificates, names: pki.CAKey},
		{name: "key of another certificate", cert: pki.ServerCert, key: pki.CAKey, ca: pki.CACert, names: pki.ServerCert},
		{name: "certificate of another CA", cert: other.ServerCert, key: other.ServerKey, ca: pki.CACert, names: other.ServerCert, msg: "not valid for server authentication"},
		{name: "server authentication only", cert: serverOnly, key: serverOnlyKey, ca: pki.CACert, names: serverOnly, msg: "not valid for client authentication"},
		{name: "client authentication only", cert: clientOnly, key: clientOnlyKey, ca: pki.CACert, names: clientOnly, msg: "not valid for server authentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RouteConfig(tt.cert, tt.key, tt.ca)
			if err == nil {
				t.Fatal("RouteConfig succeeded")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.names) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not name %s or say %q", err, tt.names, tt.msg)
			}
		})
	}
}
