package authcallout

import (
	"fmt"

	"github.com/nats-io/jwt/v2"

	"github.com/unibus/unibus/subjects"
)

// reserved are the API prefixes no peer may touch: JetStream, KV and
// object store (micro discovery, ServiceAPIAll, is for admins only).
var reserved = []string{subjects.JetStreamAll, subjects.KVAll, subjects.ObjectStoreAll}

// Permissions returns what user pub may do, by patterns on its own key
// alone: publish the control plane and its own sends (SendOf: the server
// thus attests the sender of every frame); subscribe its own inbox, its
// own deliveries (DeliverOf) and its own events (Events); nothing under
// $JS, $KV, $O; $SRV only for admins. Rooms are not named: what a member
// receives follows its memberships through the routing service, so the
// permissions (and the JWT that carries them) are the same whatever rooms
// pub is in, and a membership change never needs a reconnect. Everything
// else is refused, the room log (subjects.RoomLogAll) among it.
func Permissions(pub string, admin bool) (jwt.Permissions, error) {
	inbox, err := subjects.InboxAll(pub)
	if err != nil {
		return jwt.Permissions{}, fmt.Errorf("permissions: %w", err)
	}
	send, err := subjects.SendOf(pub)
	if err != nil {
		return jwt.Permissions{}, fmt.Errorf("permissions: %w", err)
	}
	deliver, err := subjects.DeliverOf(pub)
	if err != nil {
		return jwt.Permissions{}, fmt.Errorf("permissions: %w", err)
	}
	events, err := subjects.Events(pub)
	if err != nil {
		return jwt.Permissions{}, fmt.Errorf("permissions: %w", err)
	}
	var p jwt.Permissions
	p.Pub.Allow.Add(subjects.UsersAll, subjects.RoomsAll, subjects.BlobsAll, send)
	p.Sub.Allow.Add(inbox, deliver, events)
	p.Pub.Deny.Add(reserved...)
	p.Sub.Deny.Add(reserved...)
	if admin {
		p.Pub.Allow.Add(subjects.ServiceAPIAll)
	} else {
		p.Pub.Deny.Add(subjects.ServiceAPIAll)
		p.Sub.Deny.Add(subjects.ServiceAPIAll)
	}
	return p, nil
}
