// Package client is the Go client of unibus: Connect is the single seam
// through which bots, workers, chat clients and mobile apps reach the bus.
//
// A connection always authenticates with the caller's nkey identity (the
// server's nonce is signed with it), uses the per-user inbox prefix
// _INBOX.<pub> that the auth callout grants, and, when given a CA, speaks
// TLS pinned to that CA and refuses plaintext URLs. It reconnects for ever
// (revocations and permission refreshes disconnect it on purpose), and
// nats.go restores its subscriptions on reconnect.
//
// The client imports nats.go, never nats-server.
package client
