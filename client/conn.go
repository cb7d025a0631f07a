package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/certs"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// Option configures Connect.
type Option func(*options) error

type options struct {
	encKey        *e2e.EncryptionKey
	caFile        string
	name          string
	reconnectWait time.Duration
	insecure      bool
	natsOpts      []nats.Option
}

// WithCA pins TLS to the CA in caFile: the server must present a
// certificate it signed, and plaintext URLs are refused.
func WithCA(caFile string) Option {
	return func(o *options) error { o.caFile = caFile; return nil }
}

// WithInsecure allows plaintext connections (nats://, ws:// or no scheme)
// to servers beyond loopback, which Connect otherwise refuses with
// [ErrInsecureURL]: anyone on the path could read and rewrite the
// connection and relay its login. Use it only on a network you trust;
// prefer tls:// with WithCA. Loopback addresses (127.0.0.0/8, ::1,
// localhost) and TLS URLs need no opt-in.
func WithInsecure() Option {
	return func(o *options) error { o.insecure = true; return nil }
}

// WithEncryptionKey sets the HPKE key that opens room keys sealed to this
// identity (see LoadOrCreateEncryptionKey and SetEncryptionKey).
func WithEncryptionKey(k *e2e.EncryptionKey) Option {
	return func(o *options) error { o.encKey = k; return nil }
}

// WithName sets the connection name shown in server monitoring.
func WithName(name string) Option {
	return func(o *options) error { o.name = name; return nil }
}

// WithReconnectWait sets the pause between reconnect attempts (default
// 250ms: a connection the server dropped should heal fast).
func WithReconnectWait(d time.Duration) Option {
	return func(o *options) error { o.reconnectWait = d; return nil }
}

// WithNATSOptions appends raw nats.go options (handlers, timeouts). A
// ReconnectHandler or ErrorHandler given here runs after the client's
// own, which resume subscriptions (from the room log) and requests in
// flight after a reconnect, and catch a subscription up after nats.go
// dropped messages for it (a slow consumer).
func WithNATSOptions(opts ...nats.Option) Option {
	return func(o *options) error { o.natsOpts = append(o.natsOpts, opts...); return nil }
}

// Conn is a connection to the bus as one identity.
type Conn struct {
	nc         *nats.Conn
	reconnects *signal
	hooks      *hooks
	id         *identity.Identity
	encKey     *e2e.EncryptionKey
	keys       *keyring
	acks       *replyMux

	mu      sync.Mutex
	readers map[reader]struct{} // live subscriptions, stopped by Close
}

// reader is a subscription of the connection's (rooms, events).
type reader interface{ stopReading() }

// track records a live subscription.
func (c *Conn) track(r reader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readers[r] = struct{}{}
}

// untrack forgets a subscription that ended.
func (c *Conn) untrack(r reader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.readers, r)
}

func newConn(nc *nats.Conn, id *identity.Identity, encKey *e2e.EncryptionKey, h *hooks) *Conn {
	c := &Conn{nc: nc, id: id, encKey: encKey, reconnects: h.reconnects, hooks: h, acks: newReplyMux(nc), readers: map[reader]struct{}{}}
	c.keys = newKeyring(c)
	return c
}

// Connect connects to url (comma-separated for several servers) as id.
//
// The login answers the server's nonce with id.SignNonce, which signs only
// nonces in the form nats-server issues, so no server, whatever it sends,
// gets an application signature out of a login (see identity.Identity.Sign);
// a server that sends anything else is refused with an error that matches
// identity.ErrBadNonce.
//
// A plaintext URL (nats://, ws:// or no scheme) must name a loopback host
// (127.0.0.0/8, ::1, localhost) unless WithInsecure is given; otherwise
// Connect fails with [ErrInsecureURL] before dialing. Every URL of the list
// is checked, and so, on reconnect, is every server the cluster announces.
func Connect(ctx context.Context, url string, id *identity.Identity, opts ...Option) (*Conn, error) {
	if id == nil {
		return nil, fmt.Errorf("%w: an identity is required", ErrConnect)
	}
	o := options{reconnectWait: 250 * time.Millisecond}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConnect, err)
		}
	}
	h := newHooks()
	natsOpts, err := o.natsOptions(url, id, h)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConnect, err)
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(url, natsOpts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("%w at %s: %w", ErrConnect, url, r.err)
		}
		return newConn(r.nc, id, o.encKey, h), nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("%w at %s: %w", ErrConnect, url, ctx.Err())
	}
}

func (o options) natsOptions(url string, id *identity.Identity, h *hooks) ([]nats.Option, error) {
	inbox, err := subjects.InboxPrefix(id.PublicKey())
	if err != nil {
		return nil, err
	}
	// The caller's own handlers, if any, run after the client's.
	probe := nats.GetDefaultOptions()
	for _, opt := range o.natsOpts {
		if err := opt(&probe); err != nil {
			return nil, err
		}
	}
	userReconnected, userAsyncError := probe.ReconnectedCB, probe.AsyncErrorCB
	opts := []nats.Option{
		// SignNonce, never Sign: the nonce is the server's choice.
		nats.Nkey(id.PublicKey(), id.SignNonce),
		nats.CustomInboxPrefix(inbox),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(o.reconnectWait),
		// Revocation ends in auth errors or kicks; keep trying rather
		// than give up after two.
		nats.IgnoreAuthErrorAbort(),
	}
	if o.name != "" {
		opts = append(opts, nats.Name(o.name))
	}
	if o.caFile != "" {
		if err := certs.RequireTLSURL(url); err != nil {
			return nil, err
		}
		tlsConf, err := certs.ClientConfig(o.caFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tlsConf))
	}
	opts = append(opts, o.natsOpts...)
	opts = append(opts,
		nats.ReconnectHandler(func(nc *nats.Conn) {
			h.reconnects.fire()
			if userReconnected != nil {
				userReconnected(nc)
			}
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			h.asyncError(sub, err)
			if userAsyncError != nil {
				userAsyncError(nc, sub, err)
			}
		}))
	transport, err := transportOptions(url, o.insecure, opts)
	if err != nil {
		return nil, err
	}
	return append(opts, transport...), nil
}

// NATS returns the underlying connection, for raw subscriptions.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// Identity returns the identity the connection authenticates as.
func (c *Conn) Identity() *identity.Identity { return c.id }

// Close ends the connection's subscriptions (as Unsubscribe and Stop do,
// so it must not be called from their handlers), then drains the
// connection: pending messages are delivered and subscriptions closed
// before it returns.
func (c *Conn) Close() error {
	c.mu.Lock()
	readers := make([]reader, 0, len(c.readers))
	for r := range c.readers {
		readers = append(readers, r)
	}
	c.mu.Unlock()
	for _, r := range readers {
		r.stopReading()
	}
	if err := c.nc.Drain(); err != nil {
		c.nc.Close()
		return fmt.Errorf("close: %w", err)
	}
	for !c.nc.IsClosed() {
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// signal is a broadcast: wait returns a channel closed at the next fire.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

func (s *signal) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}

// hooks are the connection's handlers that reach the client: reconnects,
// broadcast, and slow-consumer errors, routed to the subscription they
// concern.
type hooks struct {
	reconnects *signal

	mu   sync.Mutex
	slow map[*nats.Subscription]func()
}

func newHooks() *hooks {
	return &hooks{reconnects: newSignal(), slow: map[*nats.Subscription]func(){}}
}

// onSlowConsumer calls fn whenever nats.go reports that it dropped
// messages of sub, until the returned function is called.
func (h *hooks) onSlowConsumer(sub *nats.Subscription, fn func()) (stop func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.slow[sub] = fn
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.slow, sub)
	}
}

// asyncError routes an asynchronous error of the connection.
func (h *hooks) asyncError(sub *nats.Subscription, err error) {
	if sub == nil || !errors.Is(err, nats.ErrSlowConsumer) {
		return
	}
	h.mu.Lock()
	fn := h.slow[sub]
	h.mu.Unlock()
	if fn != nil {
		fn()
	}
}
