package certs

import (
	"fmt"
	"net/url"
	"strings"
)

// defaultURL is where nats.go connects when given no URL.
const defaultURL = "nats://127.0.0.1:4222"

// RequireTLSURL checks a comma-separated list of server URLs, as nats.go
// takes it, for a client that pins a CA: every URL must use tls:// (or
// wss://, WebSocket over TLS). Any other URL (nats://, ws://, one without
// a scheme, or an empty list, which nats.go turns into a nats:// URL) gives
// an error that matches [ErrPlaintextURL] and names the URL with any user
// info redacted.
func RequireTLSURL(urls string) error {
	n := 0
	for s := range strings.SplitSeq(urls, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue // nats.go skips empty entries
		}
		n++
		scheme, _, found := strings.Cut(s, "://")
		if !found {
			return fmt.Errorf("%w %q (no scheme means nats://) with a pinned CA: use tls://", ErrPlaintextURL, redact(s))
		}
		switch strings.ToLower(scheme) {
		case "tls", "wss":
		case "ws":
			return fmt.Errorf("%w %q with a pinned CA: use wss://", ErrPlaintextURL, redact(s))
		default:
			return fmt.Errorf("%w %q with a pinned CA: use tls://", ErrPlaintextURL, redact(s))
		}
	}
	if n == 0 {
		return fmt.Errorf("%w %q (no URL means %s) with a pinned CA: use tls://", ErrPlaintextURL, urls, defaultURL)
	}
	return nil
}

// redact hides the user name, password or token in a URL, which do not
// belong in error messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if !strings.Contains(s, "@") {
			return s
		}
		// Unparsable and may hold credentials: keep only what follows them.
		return "…@" + s[strings.LastIndex(s, "@")+1:]
	}
	u.User = url.User("redacted")
	return u.String()
}
