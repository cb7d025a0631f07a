// Command worker is an example unibus bot, written to be copied: it
// accepts the invitations it gets (of every room owner, or of those
// --accept-from lists), joins those rooms and, for each message someone
// else sends that is not itself a reply, answers in the message's thread
// ("echo: <text>") and reacts with 👀. It never answers a reply, so bots
// in one room do not answer each other's answers for ever.
//
//	worker [--identity FILE] [--server URL] [--ca FILE] [--insecure] [--accept-from PUB,...] [--cursor FILE]
//
// Register the bot like any user (`unibus keygen --out bot.nk`, then an
// admin runs `unibus users add PUB --name bot`), start it, and invite it to
// rooms (`unibus rooms invite ops PUB`): the invitation reaches it as an
// event, at once, and it accepts it and joins the room. Nothing polls. An
// invitation is a proposal that grants nothing until accepted; with
// --accept-from the bot accepts only those of the listed owners, and
// leaves the others pending. When it is removed from a room, that event
// makes it leave the room. At start it also accepts the invitations made
// while it was down. Its encryption key is kept beside the seed file
// (FILE.enc) and registered when it starts, so that it can be invited to
// encrypted rooms.
//
// Every message is answered exactly once, also across restarts and
// crashes (kill -9 included). The bot keeps its place in a cursor file
// beside the seed file (FILE.cursor, or --cursor), JSON:
//
//	{"rooms": {"<room ID>": <seq of the last message processed>}, "events": <seq of the last event>}
//
// written atomically (temporary file, fsync, rename, fsync of the
// directory) after each answer. At start each room's subscription resumes
// after the cursor's message; in a room without a cursor (one joined for
// the first time) it starts at the first message the bot may see, so the
// messages sent between its invitation and its joining are answered too.
// Before subscribing it reads the room's log from the cursor on and notes
// its own answers there (a reply by itself to a message, and its
// reaction): an answer sent just before a crash, whose message the cursor
// does not record yet, is not sent again, and an answer cut in half (the
// reply without the reaction) is completed. A lost or damaged cursor file
// costs work, not duplicates. Rooms that keep no history (history "none")
// have no sequence to resume from: the bot answers what arrives while it
// runs.
//
// The flags default to the unibus CLI's environment variables
// (UNIBUS_IDENTITY, UNIBUS_SERVER, UNIBUS_CA, UNIBUS_INSECURE). A plaintext
// --server (nats://) must be on a loopback address unless --insecure (or
// UNIBUS_INSECURE=1) allows plaintext beyond it; prefer tls:// and --ca.
//
// To write your own bot, copy this directory and change bot.answer.
//
// Exit codes: 0 after SIGINT or SIGTERM, 1 on an error, 2 on bad flags
// (a plaintext server URL beyond loopback without --insecure, or with
// --ca, included), 3 when the bus refuses the identity, 69 when the bus
// cannot be reached.
package main
