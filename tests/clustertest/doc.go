// Package clustertest runs a unibus deployment of several nodes on
// loopback for cluster and fault tests: JetStream clustered over routes,
// every bucket at R3, the auth callout and the control-plane services on
// every node, one set of deployment keys.
//
// By default each node is an in-process unibus node (package node: an
// embedded nats-server and the services). With the environment variable
// UNIBUS_NATS_SERVER naming a nats-server binary (make test-cluster
// installs a pinned one), each node is instead a real nats-server process
// configured with what `unibusd nats-config` prints, plus the services
// attached to it as `unibusd --nats` runs them; Kill then sends SIGKILL.
//
// Either way the routes are those of a production deployment: authorized
// with the route credentials of the deployment keys
// (authcallout.Keys.RouteCredentials) and over mutual TLS with a
// development CA (Cluster.PKI), so that tests can attack them with
// servers of their own (StartProcess, RouteURL).
package clustertest
