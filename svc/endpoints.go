package svc

import (
	"fmt"
	"maps"
	"slices"

	"github.com/unibus/unibus/subjects"
)

// serviceDescriptions are what "nats micro info" says of each service.
var serviceDescriptions = map[string]string{
	subjects.UsersService: "unibus users: the allowlist of identities, their admin flag and encryption keys",
	subjects.RoomsService: "unibus rooms: rooms, members and sealed room keys",
	subjects.BlobsService: "unibus blobs: room content addressed by SHA-256, in chunks, sealed by the clients in encrypted rooms",
}

// newServiceSpecs describes the services of subjects.Endpoints with the
// handlers of h.
func newServiceSpecs(h *handlers) ([]serviceSpec, error) {
	return servicesFor(subjects.Endpoints(), handlersOf(h, newBlobHandlers(h)))
}

// handlersOf maps each endpoint's subject to its handler.
func handlersOf(h *handlers, bh *blobHandlers) map[string]endpoint {
	return map[string]endpoint{
		subjects.UsersAdd:     op(h.addUser),
		subjects.UsersGet:     op(h.getUser),
		subjects.UsersList:    op(h.listUsers),
		subjects.UsersRevoke:  op(h.revokeUser),
		subjects.UsersSetKey:  op(h.setKey),
		subjects.UsersEvents:  op(h.events),
		subjects.RoomsCreate:  op(h.createRoom),
		subjects.RoomsGet:     op(h.getRoom),
		subjects.RoomsInvite:  op(h.invite),
		subjects.RoomsAccept:  op(h.accept),
		subjects.RoomsDecline: op(h.decline),
		subjects.RoomsRemove:  op(h.remove),
		subjects.RoomsLeave:   op(h.leave),
		subjects.RoomsMembers: op(h.members),
		subjects.RoomsMine:    op(h.mine),
		subjects.RoomsRekey:   op(h.rekey),
		subjects.RoomsKey:     op(h.key),
		subjects.RoomsHistory: op(h.history),
		subjects.BlobsPut:     op(bh.put),
		subjects.BlobsGet:     op(bh.get),
	}
}

// servicesFor pairs every entry of table with its handler, by subject, and
// gives the handler the entry's name, summary, access and body limit; the
// services and their endpoints come in the table's order. It fails when an
// entry has no handler, a handler has no entry, or a handler's types are
// not the entry's.
func servicesFor(table []subjects.Endpoint, handlers map[string]endpoint) ([]serviceSpec, error) {
	rest := maps.Clone(handlers)
	var specs []serviceSpec
	for _, te := range table {
		ep, ok := rest[te.Subject]
		if !ok {
			return nil, fmt.Errorf("no handler for endpoint %s", te.Subject)
		}
		if ep.reqType != te.Request || ep.respType != te.Reply {
			return nil, fmt.Errorf("the handler of %s takes %s and returns %s, the endpoint %s and %s", te.Subject, ep.reqType, ep.respType, te.Request, te.Reply)
		}
		delete(rest, te.Subject)
		ep.spec = te
		if len(specs) == 0 || specs[len(specs)-1].name != te.Service {
			specs = append(specs, serviceSpec{name: te.Service, group: te.Group, description: serviceDescriptions[te.Service]})
		}
		specs[len(specs)-1].endpoints = append(specs[len(specs)-1].endpoints, ep)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("handlers for %v, which are no endpoints", slices.Sorted(maps.Keys(rest)))
	}
	return specs, nil
}
