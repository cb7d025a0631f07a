package authcallout

import (
	"fmt"
	"strings"
)

// MaxPayload is the largest message the servers accept: room rekeys of
// large rooms carry one sealed key (~1.1 KB with ML-KEM-768) per member.
const MaxPayload = 8 << 20

// NATSConfig returns the nats-server configuration unibus needs: the AUTH,
// UNIBUS (JetStream) and SYS accounts with the service users, the system
// account, and the auth_callout block. The embedded server loads exactly
// this text; `unibusd nats-config` prints it for an operator's cluster.
func NATSConfig(k Keys) (string, error) {
	if err := k.valid(); err != nil {
		return "", err
	}
	callout, service, system := mustPub(k.CalloutUser), mustPub(k.ServiceUser), mustPub(k.SystemUser)
	var b strings.Builder
	fmt.Fprintf(&b, "# unibus: accounts and auth callout (generated; identical on every node)\n")
	fmt.Fprintf(&b, "max_payload: %d\n", MaxPayload)
	fmt.Fprintf(&b, "accounts {\n")
	fmt.Fprintf(&b, "  %s: { users: [ { nkey: %q } ] }\n", AccountAuth, callout)
	fmt.Fprintf(&b, "  %s: { jetstream: enabled, users: [ { nkey: %q } ] }\n", AccountUnibus, service)
	fmt.Fprintf(&b, "  %s: { users: [ { nkey: %q } ] }\n", AccountSystem, system)
	fmt.Fprintf(&b, "}\n")
	fmt.Fprintf(&b, "system_account: %s\n", AccountSystem)
	fmt.Fprintf(&b, "authorization {\n  auth_callout {\n")
	fmt.Fprintf(&b, "    issuer: %q\n", mustPub(k.Issuer))
	fmt.Fprintf(&b, "    account: %s\n", AccountAuth)
	fmt.Fprintf(&b, "    auth_users: [ %q, %q, %q ]\n", callout, service, system)
	if k.XKey != nil {
		fmt.Fprintf(&b, "    xkey: %q\n", mustPub(k.XKey))
	}
	fmt.Fprintf(&b, "  }\n}\n")
	return b.String(), nil
}
