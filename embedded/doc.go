// Package embedded hosts an in-process nats-server with JetStream file
// storage: the default way unibusd runs, and the way tests get real servers.
//
// Start builds the server options from a Config, starts the server, waits
// until it accepts connections and returns a Server whose Close shuts it down
// and waits for it to finish. Services in the same process connect to it
// without a socket through InProcessConn.
package embedded
