// Package nodetest starts complete in-process unibus nodes for tests:
// embedded nats-server with the unibus accounts and auth callout, store,
// callout, access watcher, control-plane services and routing service, on
// a random port with temporary storage, shut down by t.Cleanup. It also
// makes registered identities and connects them as peers (Peer: the
// callout's login, the peer's own inbox prefix, signed control-plane
// requests).
package nodetest
