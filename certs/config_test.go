package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
