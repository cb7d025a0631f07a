package nodetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
)

// RequestTimeout bounds each request a Peer makes: generous, because test
// machines are small and shared, but a hung service still fails the test.
const RequestTimeout = 20 * time.Second

// Peer is a registered identity's connection to a node, made through the
// auth callout as a client makes it (nkey login, its own inbox prefix),
// with signed control-plane requests. It counts its disconnections and
// reconnections.
type Peer struct {
	t    testing.TB
	ID   *identity.Identity
	Conn *nats.Conn

	mu          sync.Mutex
	downs, ups  int
	asyncErrors []error
}

// Connect connects id to n as a peer, closed by t.Cleanup. opts come after
// the peer's own (a TLS node's clients add nats.RootCAs).
func Connect(t testing.TB, n *node.Node, id *identity.Identity, opts ...nats.Option) *Peer {
	t.Helper()
	p := &Peer{t: t, ID: id}
	base := append(ConnectOptions(id),
		nats.Name("peer-"+id.PublicKey()[:8]),
		// A connect storm on a loaded machine (the callout verifies each
		// one): nats.go's default of 2 s is too short a bound.
		nats.Timeout(RequestTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.IgnoreAuthErrorAbort(),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { p.event(true) }),
		nats.ReconnectHandler(func(*nats.Conn) { p.event(false) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			p.mu.Lock()
			p.asyncErrors = append(p.asyncErrors, err)
			p.mu.Unlock()
		}),
	)
	nc, err := nats.Connect(n.ClientURL(), append(base, opts...)...)
	if err != nil {
		t.Fatalf("connect %s: %v", id.PublicKey(), err)
	}
	t.Cleanup(nc.Close)
	p.Conn = nc
	return p
}

func (p *Peer) event(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if down {
		p.downs++
	} else {
		p.ups++
	}
}

// Pub is the peer's public key.
func (p *Peer) Pub() string { return p.ID.PublicKey() }

// Disconnects is how many times the connection was lost so far.
func (p *Peer) Disconnects() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.downs
}

// AsyncErrors are the asynchronous errors the server sent the connection
// so far (permission violations among them).
func (p *Peer) AsyncErrors() []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]error(nil), p.asyncErrors...)
}

// Request signs req (JSON) as a request to subject, sends it and decodes
// the reply into resp (when not nil). An error reply is returned as a
// *subjects.Error, which matches the sentinel of its code
// (subjects.ErrForbidden…).
func (p *Peer) Request(subject string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	h, err := subjects.SignRequest(p.ID.KeyPair(), subject, body, time.Now())
	if err != nil {
		return fmt.Errorf("sign request: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	r, err := p.Conn.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Header: h, Data: body})
	if err != nil {
		return fmt.Errorf("request %s: %w", subject, err)
	}
	if err := ReplyError(r); err != nil {
		return err
	}
	if resp == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(r.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(resp); err != nil {
		return fmt.Errorf("decode reply of %s %s: %w", subject, r.Data, err)
	}
	return nil
}

// Call is Request that must succeed.
func (p *Peer) Call(subject string, req, resp any) {
	p.t.Helper()
	if err := p.Request(subject, req, resp); err != nil {
		p.t.Fatalf("%s: %v", subject, err)
	}
}

// ReplyError returns the error of a micro error reply as a
// *subjects.Error, or nil for any other reply.
func ReplyError(r *nats.Msg) error {
	code := r.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return nil
	}
	n, err := strconv.Atoi(code)
	if err != nil {
		return fmt.Errorf("error reply with code %q: %s", code, r.Header.Get(micro.ErrorHeader))
	}
	return &subjects.Error{Code: n, Message: r.Header.Get(micro.ErrorHeader)}
}
