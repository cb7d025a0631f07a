// Package node starts one complete unibus node in-process: the embedded
// nats-server configured with the unibus accounts and auth callout, the
// store over JetStream KV, the callout service, the access watcher that
// disconnects revoked users and refreshes permissions, and the control-plane
// micro services. unibusd runs a Node; tests run many.
package node
