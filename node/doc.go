// Package node starts one complete unibus node in-process: the embedded
// nats-server configured with the unibus accounts and auth callout, the
// store over JetStream (the KV buckets, the room log and the events
// streams), the callout service, the access watcher that disconnects
// revoked users, the control-plane micro services and the routing service
// (package router) that checks, stores and delivers the members' frames.
// unibusd runs a Node; tests run many.
//
// Each part connects as its own deployment user (authcallout.Keys), with
// only the rights it needs: the services answer requests
// (Node.ServiceConn), the router receives sends and publishes deliveries
// (Node.RouterConn), and only the store's connection (Node.StoreConn)
// writes state. Start starts them in that order, the router last, once
// the services run; Close stops the router first, then the services, the
// watcher and the callout, and closes the connections and the server.
package node
