// Command worker is an example unibus bot, written to be copied: it
// accepts the invitations it gets (of every room owner, or of those
// --accept-from lists), joins those rooms and, for each message someone
// else sends
// that is not itself a reply, answers in the message's thread
// ("echo: <text>") and reacts with 👀. It never answers a reply, so bots
// in one room do not answer each other's answers for ever.
//
//	worker [--identity FILE] [--server URL] [--ca FILE] [--insecure] [--poll 3s] [--accept-from PUB,...]
//
// Register the bot like any user (`unibus keygen --out bot.nk`, then an
// admin runs `unibus users add PUB --name bot`), start it, and invite it to
// rooms (`unibus rooms invite ops PUB`): it finds new invitations within
// one poll interval and accepts them. An invitation is a proposal that
// grants nothing until accepted; with --accept-from the bot accepts only
// those of the listed owners, and leaves the others pending. Its encryption key is kept beside the seed file
// (FILE.enc) and registered when it starts, so that it can be invited to
// encrypted rooms.
//
// The flags default to the unibus CLI's environment variables
// (UNIBUS_IDENTITY, UNIBUS_SERVER, UNIBUS_CA, UNIBUS_INSECURE). A plaintext
// --server (nats://) must be on a loopback address unless --insecure (or
// UNIBUS_INSECURE=1) allows plaintext beyond it; prefer tls:// and --ca.
//
// To write your own bot, copy this directory and change worker.handle.
//
// Exit codes: 0 after SIGINT or SIGTERM, 1 on an error, 2 on bad flags
// (a plaintext server URL beyond loopback without --insecure, or with
// --ca, included), 3 when the bus refuses the identity, 69 when the bus
// cannot be reached.
package main
