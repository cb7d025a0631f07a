// Package client is the Go client of unibus: Connect is the single seam
// through which bots, workers, chat clients and mobile apps reach the bus.
//
// A connection always authenticates with the caller's nkey identity (the
// server's nonce is signed with identity.SignNonce, which signs nothing but
// a nonce of nats-server's form, so no server gets an application
// signature out of a login), uses the per-user inbox prefix _INBOX.<pub>
// that the auth callout grants, and, when given a CA, speaks TLS pinned to
// that CA and refuses plaintext URLs. Without WithInsecure it refuses
// plaintext to any server beyond loopback (ErrInsecureURL), including
// servers the cluster announces. It reconnects for ever
// (revocations and permission refreshes disconnect it on purpose), and
// nats.go restores its subscriptions on reconnect.
//
// The client imports nats.go, never nats-server.
package client
