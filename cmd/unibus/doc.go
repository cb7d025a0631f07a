// Command unibus is the command line of the unibus secure message bus.
//
//	unibus keygen [--out FILE]                 write a new identity (no server needed)
//	unibus whoami [--offline]                  your public key and registration
//	unibus users add PUB [--name N] [--admin]  register a user (admins)
//	unibus users list [--json]                 list users (admins)
//	unibus users revoke PUB                    revoke a user (admins)
//	unibus rooms create NAME [--cleartext] [--history keep|none] [--history-max-age D]
//	                                           create a room, print its ID
//	unibus rooms list [--json]                 the rooms you belong to
//	unibus rooms invite ROOM PUB               invite a user, who accepts to join (owner)
//	unibus rooms invitations [--json]          your pending invitations
//	unibus rooms accept ROOM                   accept an invitation: join the room
//	unibus rooms decline ROOM                  decline an invitation
//	unibus rooms remove ROOM PUB               remove a member or withdraw an invitation, and rekey (owner)
//	unibus rooms members ROOM [--json]         list members
//	unibus rooms rekey ROOM                    fresh room key (owner)
//	unibus rooms leave ROOM                    leave a room
//	unibus send ROOM MESSAGE... [--reply-to ID]  send, print the message ID and seq once stored
//	unibus listen ROOM... [--json] [--count N] [--last N | --since T | --from SEQ]
//	                                           print messages as they arrive (after the stored ones)
//	unibus history ROOM [--last N | --since T | --from SEQ] [--limit N] [--json]
//	                                           print a room's stored messages, oldest first
//	unibus react ROOM MSGID EMOJI              react to a message, print its ID and seq
//	unibus chat [ROOM]                         terminal chat: threads, reactions, scrollback, room switcher
//	unibus blob put ROOM FILE                  upload (sealed in encrypted rooms), print the ID
//	unibus blob get ROOM BLOBID [-o FILE]      download, verify the hash, open
//	unibus sign SUBJECT [BODY|-] [--json]      headers that sign one request, as nats req -H flags
//	unibus completion bash|zsh|fish|powershell shell completion script
//
// ROOM is a room ID or the name of one of the caller's rooms (for accept
// and decline, of one of its invitations); an ambiguous name is a usage
// error that lists the IDs.
//
// Rooms keep a durable log of their (sealed) frames unless created with
// history "none". SEQ is a frame's sequence in that log, which send prints
// and history and listen --json show. The start points of listen and
// history (at most one): --last N messages, --since T (a duration back
// from now such as 1h or 2d, an RFC 3339 time, or a date), --from SEQ.
// listen prints the stored messages from the start point, then the new
// ones, with no gap and no duplicate, also across reconnections; chat
// opens each room with its last screenful and PgUp loads older pages.
//
// Global flags, with their environment variables and defaults:
//
//	--identity FILE  UNIBUS_IDENTITY  ~/.config/unibus/identity.nk ($XDG_CONFIG_HOME honoured)
//	--server URL     UNIBUS_SERVER    nats://127.0.0.1:4222
//	--ca FILE        UNIBUS_CA        none: pin TLS to this CA (needs a tls:// URL)
//	--insecure       UNIBUS_INSECURE  off: allow a plaintext (nats://) URL beyond loopback
//	--timeout D                       10s: bounds connecting and each request
//
// A plaintext server URL must name a loopback address (127.0.0.1, ::1,
// localhost) unless --insecure (or UNIBUS_INSECURE=1) is given: anyone on
// the path of a plaintext connection can read and rewrite it. Use tls://
// beyond loopback.
//
// The encryption key that opens room keys sealed to the identity lives
// beside the seed file (FILE.enc). Every command that touches encrypted
// rooms, and whoami, registers it with the users service (creating it on
// first use), so a new user runs `unibus whoami` once before an owner can
// invite it.
//
// Exit codes:
//
//	0   success
//	1   error
//	2   usage: unknown command or flag, missing or malformed argument,
//	    plaintext URL beyond loopback without --insecure
//	3   refused: not registered or revoked, forbidden, bad signature
//	4   not found: no such user, room or member
//	5   conflict: already exists (a user, the keygen output file), or a
//	    concurrent change won (retry)
//	69  unavailable: server unreachable, service down, or no answer in time
//	130 interrupted
//
// Each command is a struct with Run(ctx, args) error, which cobra's RunE
// calls and tests call directly; main only maps errors to exit codes and
// hints. The version is set with -ldflags "-X main.version=…".
package main
