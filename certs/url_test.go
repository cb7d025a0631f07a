package certs

import (
	"errors"
	"strings"
	"testing"
)

func TestRequireTLSURL(t *testing.T) {
	tests := []struct {
		url     string
		wantErr bool
		wantMsg string // part of the error message
	}{
		{url: "tls://a:4222"},
		{url: "TLS://a:4222"},
		{url: "tls://a:4222,tls://b:4222"},
		{url: " tls://a:4222 , tls://b:4222 "},
		{url: "tls://a:4222,"},
		{url: "wss://a:443"},
		{url: "tls://user:secret@a:4222"},

		{url: "nats://a:4222", wantErr: true, wantMsg: `refusing plaintext URL "nats://a:4222" with a pinned CA: use tls://`},
		{url: "tls://a,nats://b", wantErr: true, wantMsg: `"nats://b"`},
		{url: "nats://b,tls://a", wantErr: true, wantMsg: `"nats://b"`},
		{url: "a:4222", wantErr: true, wantMsg: `"a:4222" (no scheme means nats://)`},
		{url: "a", wantErr: true, wantMsg: `"a"`},
		{url: "ws://a:80", wantErr: true, wantMsg: "use wss://"},
		{url: "http://a", wantErr: true, wantMsg: "use tls://"},
		{url: "", wantErr: true, wantMsg: "nats://127.0.0.1:4222"},
		{url: " , ", wantErr: true, wantMsg: "nats://127.0.0.1:4222"},
		{url: "nats://user:secret@a:4222", wantErr: true, wantMsg: `"nats://redacted@a:4222"`},
		{url: "nats://s3cr3ttoken@a:4222", wantErr: true, wantMsg: `"nats://redacted@a:4222"`},
		{url: "user:secret@a:4222", wantErr: true, wantMsg: `"…@a:4222"`},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := RequireTLSURL(tt.url)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("RequireTLSURL: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrPlaintextURL) {
				t.Fatalf("error = %v, want ErrPlaintextURL", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q does not contain %q", msg, tt.wantMsg)
			}
			if strings.Contains(msg, "secret") || strings.Contains(msg, "s3cr3t") {
				t.Errorf("error %q leaks credentials", msg)
			}
		})
	}
}
