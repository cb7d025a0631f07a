package svc

import (
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/unibus/unibus/subjects"
)

// TestServicesFor: every table entry needs its handler, every handler its
// entry, with the entry's types; the services and endpoints come out in
// the table's order with its facts.
func TestServicesFor(t *testing.T) {
	h := &handlers{}
	all := handlersOf(h, &blobHandlers{handlers: h})
	table := subjects.Endpoints()

	users := maps.Clone(all)
	maps.DeleteFunc(users, func(s string, _ endpoint) bool { return s == subjects.RoomsCreate })
	if _, err := servicesFor(table, users); err == nil || !strings.Contains(err.Error(), "no handler for endpoint "+subjects.RoomsCreate) {
		t.Errorf("entries without handlers: %v", err)
	}
	if _, err := servicesFor(table[:len(table)-1], all); err == nil || !strings.Contains(err.Error(), "["+subjects.BlobsGet+"]") {
		t.Errorf("a handler without an entry: %v", err)
	}
	wrong := maps.Clone(all)
	wrong[subjects.UsersGet] = op(func(context.Context, caller, *subjects.RoomRequest) (subjects.UserInfo, error) {
		return subjects.UserInfo{}, nil
	})
	if _, err := servicesFor(table, wrong); err == nil || !strings.Contains(err.Error(), "subjects.RoomRequest") {
		t.Errorf("a handler of another request type: %v", err)
	}

	specs, err := servicesFor(table, all)
	if err != nil {
		t.Fatal(err)
	}
	var got []subjects.Endpoint
	for _, spec := range specs {
		if spec.description == "" {
			t.Errorf("service %s has no description", spec.name)
		}
		for _, ep := range spec.endpoints {
			te := table[len(got)]
			if spec.name != te.Service || spec.group != te.Group || ep.spec != te || ep.reqType != te.Request || ep.respType != te.Reply {
				t.Errorf("%s: %+v, want %+v", te.Subject, ep, te)
			}
			got = append(got, te)
		}
	}
	if len(specs) != 3 || len(got) != len(table) {
		t.Errorf("%d services with %d endpoints, want 3 with %d", len(specs), len(got), len(table))
	}
}
