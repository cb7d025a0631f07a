// Command unibusd runs unibus: by default an embedded nats-server with
// JetStream, the auth callout, the control-plane services and the routing
// service (which stores and delivers the rooms' frames) in one process.
//
//	unibusd [--host 127.0.0.1] [--port 4222] [--data DIR] [--config FILE] [flags]
//	unibusd --nats URL[,URL...] --creds FILE [flags]   attached to an operator's nats-servers
//	unibusd nats-config --creds FILE                   print the nats-server configuration it needs
//
// `unibusd --help` lists every flag; each is also a setting of the
// configuration file (NATS configuration format) and the README has the
// reference. The data directory defaults to $UNIBUS_DATA, else
// $XDG_DATA_HOME/unibus, else ~/.local/share/unibus.
//
// unibusd stops cleanly on SIGINT or SIGTERM. Exit codes:
//
//	0   stopped cleanly, or --help
//	2   bad flags, settings or configuration file (the message names them)
//	1   anything else: a client port already in use, a data directory it
//	    cannot write, servers it cannot reach in time, ...
package main
