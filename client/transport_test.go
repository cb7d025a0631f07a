package client

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/identity"
)

// recordingDialer records the addresses it is asked to dial and fails.
type recordingDialer struct{ dialed []string }

var errRecorded = errors.New("recorded")

func (d *recordingDialer) Dial(_, address string) (net.Conn, error) {
	d.dialed = append(d.dialed, address)
	return nil, errRecorded
}

// applied returns the nats.go options that opts produce.
func applied(t *testing.T, opts []nats.Option) nats.Options {
	t.Helper()
	o := nats.GetDefaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// TestTransportOptions: which connections get the loopback-only dialer,
// and which are refused outright.
func TestTransportOptions(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		url     string
		opts    []Option
		refused bool // ErrInsecureURL before dialing
		guarded bool // the loopback-only dialer is installed
	}{
		{name: "loopback plaintext", url: "nats://127.0.0.1:4222", guarded: true},
		{name: "default URL", url: "", guarded: true},
		{name: "remote plaintext", url: "nats://example.com:4222", refused: true},
		{name: "remote plaintext, insecure", url: "nats://example.com:4222", opts: []Option{WithInsecure()}},
		{name: "loopback plaintext, insecure", url: "nats://127.0.0.1:4222", opts: []Option{WithInsecure()}},
		{name: "remote TLS", url: "tls://example.com:4222"},
		{name: "remote websocket TLS", url: "wss://example.com:443"},
		{name: "loopback and remote TLS", url: "nats://127.0.0.1:4222,tls://example.com:4222"},
		{name: "remote plaintext with TLS forced by nats.go options", url: "nats://example.com:4222",
			opts: []Option{WithNATSOptions(nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12}))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o options
			for _, opt := range tc.opts {
				if err := opt(&o); err != nil {
					t.Fatal(err)
				}
			}
			natsOpts, err := o.natsOptions(tc.url, id, newHooks())
			if tc.refused {
				if !errors.Is(err, ErrInsecureURL) {
					t.Fatalf("natsOptions error = %v, want ErrInsecureURL", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := applied(t, natsOpts)
			_, guarded := got.CustomDialer.(loopbackDialer)
			if guarded != tc.guarded {
				t.Fatalf("loopback-only dialer installed = %v, want %v", guarded, tc.guarded)
			}
			if got.SignatureCB == nil {
				t.Fatal("no signature callback")
			}
			if _, err := got.SignatureCB([]byte("unibus-req-v1\nx")); !errors.Is(err, identity.ErrBadNonce) {
				t.Fatalf("the login signs an application message: error = %v", err)
			}
		})
	}
}

// TestLoopbackDialer: the guard refuses addresses beyond loopback and
// passes loopback ones to the dialer it wraps, the caller's own included.
func TestLoopbackDialer(t *testing.T) {
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	inner := &recordingDialer{}
	var o options
	if err := WithNATSOptions(nats.SetCustomDialer(inner))(&o); err != nil {
		t.Fatal(err)
	}
	natsOpts, err := o.natsOptions("nats://127.0.0.1:4222", id, newHooks())
	if err != nil {
		t.Fatal(err)
	}
	d := applied(t, natsOpts).CustomDialer
	if _, ok := d.(loopbackDialer); !ok {
		t.Fatalf("dialer %T, want the loopback-only guard", d)
	}
	for _, addr := range []string{"10.1.2.3:4222", "[2001:db8::1]:4222", "example.com:4222", "0.0.0.0:4222", "no-port"} {
		if _, err := d.Dial("tcp", addr); !errors.Is(err, ErrInsecureURL) {
			t.Errorf("Dial(%s) error = %v, want ErrInsecureURL", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:4222", "127.1.2.3:4222", "[::1]:4222", "localhost:4222"} {
		if _, err := d.Dial("tcp", addr); !errors.Is(err, errRecorded) {
			t.Errorf("Dial(%s) error = %v, want the wrapped dialer's", addr, err)
		}
	}
	want := []string{"127.0.0.1:4222", "127.1.2.3:4222", "[::1]:4222", "localhost:4222"}
	if len(inner.dialed) != len(want) {
		t.Fatalf("wrapped dialer dialed %q, want %q", inner.dialed, want)
	}
	for i := range want {
		if inner.dialed[i] != want[i] {
			t.Fatalf("wrapped dialer dialed %q, want %q", inner.dialed, want)
		}
	}
}
