// Command unibusd runs unibus: by default an embedded nats-server with
// JetStream and the unibus services in one process.
//
//	unibusd [--host 127.0.0.1] [--port 4222] [--data DIR]
//
// The data directory defaults to $UNIBUS_DATA, else
// $XDG_DATA_HOME/unibus, else ~/.local/share/unibus.
package main
