// Package cluster holds the cluster and fault tests: a 3-node deployment
// (package clustertest) with every bucket at R3 and the services on every
// node, driven through the Go client and raw NATS requests. The same suite
// runs on in-process nodes (make test) and on real nats-server processes
// (make test-cluster).
package cluster
