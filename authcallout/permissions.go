package authcallout

import (
	"fmt"

	"github.com/nats-io/jwt/v2"

	"github.com/unibus/unibus/subjects"
)

// reserved are the API prefixes no peer may touch: JetStream, KV and
// object store (micro discovery, ServiceAPIAll, is for admins only).
var reserved = []string{subjects.JetStreamAll, subjects.KVAll, subjects.ObjectStoreAll}

// Permissions returns what user pub may do: publish the control plane and
// its rooms' subjects; subscribe its own inbox and its rooms' subjects;
// nothing under $JS, $KV, $O; $SRV only for admins.
func Permissions(pub string, admin bool, roomSubjects []string) (jwt.Permissions, error) {
	inbox, err := subjects.InboxAll(pub)
	if err != nil {
		return jwt.Permissions{}, fmt.Errorf("permissions: %w", err)
	}
	for _, s := range roomSubjects {
		if _, err := subjects.RoomIDFromSubject(s); err != nil {
			return jwt.Permissions{}, fmt.Errorf("permissions: %w", err)
		}
	}
	var p jwt.Permissions
	p.Pub.Allow.Add(subjects.UsersAll, subjects.RoomsAll, subjects.BlobsAll)
	p.Pub.Allow.Add(roomSubjects...)
	p.Sub.Allow.Add(inbox)
	p.Sub.Allow.Add(roomSubjects...)
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
