// Package e2e tests unibus end to end over its built binaries: TestMain
// builds unibusd, the unibus CLI and the example worker once with the go
// command that runs the tests, and the tests run them as subprocesses
// against a real unibusd (embedded nats-server, auth callout, services)
// with its data in a temporary directory.
//
// The tests cover a conversation in an encrypted room (CLI users, a
// listener printing JSON lines and the worker bot answering in a thread),
// the documented exit codes and messages of the three commands on bad
// input, and the durability of acknowledged control-plane writes across
// SIGKILLs of unibusd. Every subprocess is killed by t.Cleanup and every
// wait is bounded. The package holds tests only.
package e2e
