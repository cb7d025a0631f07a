// Package natstest starts real nats-servers for tests: one in-process server
// with JetStream on a random port and temporary storage, or a cluster of
// in-process nodes joined by routes on loopback. Everything it starts is shut
// down by t.Cleanup. It also holds the fakes of the auth callout's store
// (MemoryCalloutStore, SlowCalloutStore), importable from the callout's
// own package tests. It is imported by tests only.
package natstest
