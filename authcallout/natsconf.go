package authcallout

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/unibus/unibus/subjects"
)

// MaxPayload is the largest message the servers accept: room rekeys of
// large rooms carry one sealed key (~1.1 KB with ML-KEM-768) per member.
// Account UNIBUS has a lower limit, PeerLimits.MaxPublishBytes.
const MaxPayload = 8 << 20

// NATSConfig returns the nats-server configuration unibus needs: the AUTH,
// UNIBUS (JetStream) and SYS accounts with the deployment's users and
// their permissions, the system account, and the auth_callout block, with
// l the limits of account UNIBUS (zero fields take their defaults; give
// the callout, Config.Limits, the same). The embedded server loads exactly
// this text; `unibusd nats-config` prints it for an operator's cluster.
func NATSConfig(k Keys, l PeerLimits) (string, error) {
	if err := k.valid(); err != nil {
		return "", err
	}
	l = l.withDefaults()
	if err := l.valid(); err != nil {
		return "", err
	}
	callout, service, store, router, system := mustPub(k.CalloutUser), mustPub(k.ServiceUser), mustPub(k.StoreUser), mustPub(k.RouterUser), mustPub(k.SystemUser)
	var b strings.Builder
	fmt.Fprintf(&b, "# unibus: accounts and auth callout (generated; identical on every node)\n")
	fmt.Fprintf(&b, "max_payload: %d\n", MaxPayload)
	fmt.Fprintf(&b, "accounts {\n")
	fmt.Fprintf(&b, "  %s: { users: [\n", AccountAuth)
	fmt.Fprintf(&b, "    # the callout: answers the servers' authorization requests, nothing else\n")
	fmt.Fprintf(&b, "    { nkey: %q, permissions: %s }\n", callout, calloutPermissions)
	fmt.Fprintf(&b, "  ] }\n")
	fmt.Fprintf(&b, "  # JetStream storage limits count every replica; blobs and the room log take at most three quarters\n")
	fmt.Fprintf(&b, "  %s: { jetstream: { max_file: %d, max_mem: %d }, limits: { max_payload: %d, max_subscriptions: %d }, users: [\n",
		AccountUnibus, l.MaxFileStore, l.MaxMemoryStore, l.MaxPublishBytes, l.MaxSubscriptions)
	fmt.Fprintf(&b, "    # the services' responder: receives requests, replies only into peers' inboxes\n")
	fmt.Fprintf(&b, "    { nkey: %q, permissions: %s }\n", service, servicePermissions)
	fmt.Fprintf(&b, "    # the owner of state: JetStream, KV, object store, the room log and the events; receives no requests\n")
	fmt.Fprintf(&b, "    { nkey: %q, permissions: %s }\n", store, storePermissions)
	fmt.Fprintf(&b, "    # the router: receives sends, publishes only deliveries and replies into inboxes\n")
	fmt.Fprintf(&b, "    { nkey: %q, permissions: %s }\n", router, routerPermissions)
	fmt.Fprintf(&b, "  ] }\n")
	fmt.Fprintf(&b, "  %s: { users: [ { nkey: %q } ] }\n", AccountSystem, system)
	fmt.Fprintf(&b, "}\n")
	fmt.Fprintf(&b, "system_account: %s\n", AccountSystem)
	fmt.Fprintf(&b, "authorization {\n  auth_callout {\n")
	fmt.Fprintf(&b, "    issuer: %q\n", mustPub(k.Issuer))
	fmt.Fprintf(&b, "    account: %s\n", AccountAuth)
	fmt.Fprintf(&b, "    auth_users: [ %q, %q, %q, %q, %q ]\n", callout, service, store, router, system)
	if k.XKey != nil {
		fmt.Fprintf(&b, "    xkey: %q\n", mustPub(k.XKey))
	}
	fmt.Fprintf(&b, "  }\n}\n")
	return b.String(), nil
}

// The permissions of the deployment's own users, in nats-server
// configuration syntax. A reply subject is chosen by whoever sends a
// request, so a connection that answers requests must hold no right a
// caller lacks: the services' responder may publish only into the peers'
// inboxes; the router, which receives every send, only into inboxes and
// members' deliveries; and the connection that owns state (StoreUser),
// the only one that may write the room log and the events, subscribes to
// nothing but its own inboxes, so that no request reaches it. A mistake in
// the services' or the router's own reply check thus still cannot write a
// record, call the JetStream API or append to a room's log.
var (
	calloutPermissions = permissionsConf(
		[]string{serverInboxAll},
		[]string{requestSubject})
	servicePermissions = permissionsConf(
		[]string{subjects.InboxesAll},
		[]string{subjects.UsersAll, subjects.RoomsAll, subjects.BlobsAll, subjects.ServiceAPIAll})
	storePermissions = permissionsConf(
		[]string{subjects.JetStreamAll, subjects.KVAll, subjects.ObjectStoreAll, subjects.RoomLogAll, subjects.EventsAll},
		[]string{subjects.InboxesAll})
	routerPermissions = permissionsConf(
		[]string{subjects.InboxesAll, subjects.DeliverAll},
		[]string{subjects.SendAll, subjects.ServiceAPIAll, subjects.InboxesAll})
)

// serverInboxAll covers the reply subjects of the requests nats-server
// sends itself (its "$SYS._INBOX." prefix), among them the authorization
// requests the callout answers.
const (
	serverInboxPrefix = "$SYS._INBOX."
	serverInboxAll    = serverInboxPrefix + ">"
)

// permissionsConf is a permissions block that allows publishing to pub and
// subscribing to sub, and nothing else.
func permissionsConf(pub, sub []string) string {
	list := func(subs []string) string {
		quoted := make([]string, len(subs))
		for i, s := range subs {
			quoted[i] = strconv.Quote(s)
		}
		return "[ " + strings.Join(quoted, ", ") + " ]"
	}
	return fmt.Sprintf("{ publish: { allow: %s }, subscribe: { allow: %s } }", list(pub), list(sub))
}

// PeerLimits are the limits of account UNIBUS: what every connection of
// it (peers and the services alike) may publish and subscribe, and what
// the whole account may keep in JetStream.
//
// The connection limits are account limits in the NATS configuration
// because nats-server (2.15) ignores the limits of a user JWT issued by an
// auth callout: it registers the callout's user from its permissions
// alone. The callout still writes them into the JWTs it issues
// (Config.Limits), where a server that honors them takes the lowest of the
// user's, the account's and its own. The storage limits exist only in the
// NATS configuration; the callout ignores them.
type PeerLimits struct {
	// MaxPublishBytes is the largest message a connection may publish,
	// headers included (the server closes a connection that publishes a
	// larger one). NATS cannot tell room frames from control-plane
	// requests, so it must hold the largest request a peer sends, a rekey
	// of svc.Config.MaxBundleBytes with its signature headers; it bounds
	// frames only as far as that allows (receivers drop frames over
	// client/e2e.MaxFrameSize). It also bounds the services' replies.
	// Zero means DefaultMaxPublishBytes; it must be between
	// MinPublishBytes and MaxPayload.
	MaxPublishBytes int64
	// MaxSubscriptions bounds the subscriptions of one connection: a
	// peer's inbox, deliveries and events (a few, whatever its rooms), or
	// a services instance's endpoints and a few per worker. Zero means
	// DefaultMaxSubscriptions, -1 no limit.
	MaxSubscriptions int64
	// MaxFileStore bounds the JetStream file storage of account UNIBUS,
	// in bytes, every replica counted (a byte of an R3 bucket takes
	// three): its KV buckets, the object store of blobs, and the streams
	// of the room log and the events. Beyond it the servers refuse the
	// account's writes, nonce claims included, so the store sizes the
	// object store and the room log to leave the KV buckets and the
	// events at least a quarter of it (kvstore.Config.BlobStoreMaxBytes
	// and the sizes beside it). Zero means
	// DefaultMaxFileStore, -1 no limit of the account's own (the servers'
	// JetStream limit remains, by default 75% of the disk space free when
	// they start); otherwise at least MinStoreBytes.
	MaxFileStore int64
	// MaxMemoryStore bounds the account's JetStream memory storage
	// (buckets made with kvstore.Config.Memory) in the same way. Zero
	// means DefaultMaxMemoryStore, -1 no limit of the account's own;
	// otherwise at least MinStoreBytes.
	MaxMemoryStore int64
}

// Defaults and bounds of PeerLimits.
const (
	// DefaultMaxPublishBytes is the control plane's largest request
	// (svc.DefaultMaxBundleBytes, 4 MiB) with its signature headers.
	DefaultMaxPublishBytes = 4<<20 + publishHeaderBytes
	// MinPublishBytes is a full frame (client/e2e.MaxFrameSize, 1 MiB)
	// with its headers, which also holds a blob chunk request (about
	// 700 KB) and its reply.
	MinPublishBytes = 1<<20 + publishHeaderBytes
	// DefaultMaxSubscriptions leaves a peer room for its inbox,
	// deliveries and events and, several times over, a subscription per
	// room it may belong to (svc.DefaultMaxRoomsPerUser, 1000) should a
	// client keep one, and the services room for their workers.
	DefaultMaxSubscriptions = 1 << 14
	// DefaultMaxFileStore is 8 GiB of JetStream file storage for account
	// UNIBUS: on one node (R1), by the store's default shares, 4 GiB for
	// blobs, 2 GiB for the room log, and the rest for the events and the
	// KV buckets; the servers must have that much room (a stream's and an
	// object store's size is reserved when it is made), so a node needs
	// about 8 GiB of free disk. At R3 every byte counts three times:
	// raise it.
	DefaultMaxFileStore = 8 << 30
	// DefaultMaxMemoryStore is 1 GiB of JetStream memory storage for
	// account UNIBUS (tests and benchmarks keep their buckets in memory).
	DefaultMaxMemoryStore = 1 << 30
	// MinStoreBytes is the smallest storage limit of the account.
	MinStoreBytes = 1 << 20

	// publishHeaderBytes is the room left for a message's NATS headers
	// (a signed request's come to about 300 bytes).
	publishHeaderBytes = 16 << 10
)

// Validate checks the limits with their defaults applied.
func (l PeerLimits) Validate() error { return l.withDefaults().valid() }

func (l PeerLimits) withDefaults() PeerLimits {
	if l.MaxPublishBytes == 0 {
		l.MaxPublishBytes = DefaultMaxPublishBytes
	}
	if l.MaxSubscriptions == 0 {
		l.MaxSubscriptions = DefaultMaxSubscriptions
	}
	if l.MaxFileStore == 0 {
		l.MaxFileStore = DefaultMaxFileStore
	}
	if l.MaxMemoryStore == 0 {
		l.MaxMemoryStore = DefaultMaxMemoryStore
	}
	return l
}

func (l PeerLimits) valid() error {
	if l.MaxPublishBytes < MinPublishBytes || l.MaxPublishBytes > MaxPayload {
		return fmt.Errorf("%w: max publish bytes must be %d..%d (a full frame, up to the server's max_payload), got %d",
			ErrConfigValidation, MinPublishBytes, MaxPayload, l.MaxPublishBytes)
	}
	if l.MaxSubscriptions < -1 || l.MaxSubscriptions > math.MaxInt32 {
		return fmt.Errorf("%w: max subscriptions must be positive, or -1 for no limit, got %d", ErrConfigValidation, l.MaxSubscriptions)
	}
	for _, store := range []struct {
		name  string
		bytes int64
	}{{"max file store", l.MaxFileStore}, {"max memory store", l.MaxMemoryStore}} {
		if store.bytes != -1 && store.bytes < MinStoreBytes {
			return fmt.Errorf("%w: %s must be at least %d bytes, or -1 for no limit of the account's own, got %d",
				ErrConfigValidation, store.name, MinStoreBytes, store.bytes)
		}
	}
	return nil
}
