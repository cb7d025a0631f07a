// Package nodetest starts complete in-process unibus nodes for tests:
// embedded nats-server with the unibus accounts and auth callout, store,
// callout and access watcher, on a random port with temporary storage, shut
// down by t.Cleanup. It also makes registered identities.
package nodetest
