package subjects_test

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/unibus/unibus/subjects"
)

// TestEndpoints checks the endpoint table against the subject constants
// and the wire types.
func TestEndpoints(t *testing.T) {
	seen := map[string]bool{}
	for _, ep := range subjects.Endpoints() {
		if ep.Subject != ep.Group+"."+ep.Name || seen[ep.Subject] {
			t.Errorf("%s: group %q, name %q, or a second entry", ep.Subject, ep.Group, ep.Name)
		}
		seen[ep.Subject] = true
		if ep.Request.Kind() != reflect.Struct || ep.Reply.Kind() != reflect.Struct || ep.Summary == "" || ep.Access == "" {
			t.Errorf("%s: request %s, reply %s, summary %q, access %q", ep.Subject, ep.Request, ep.Reply, ep.Summary, ep.Access)
		}
		if ep.OwnerSigned != (ep.Access == subjects.AccessOwner) {
			t.Errorf("%s: owner-signed %v with access %q", ep.Subject, ep.OwnerSigned, ep.Access)
		}
	}
	want := []string{
		subjects.UsersAdd, subjects.UsersGet, subjects.UsersList, subjects.UsersRevoke, subjects.UsersSetKey, subjects.UsersEvents,
		subjects.RoomsCreate, subjects.RoomsGet, subjects.RoomsInvite, subjects.RoomsAccept, subjects.RoomsDecline, subjects.RoomsRemove, subjects.RoomsLeave,
		subjects.RoomsMembers, subjects.RoomsMine, subjects.RoomsRekey, subjects.RoomsKey, subjects.RoomsHistory,
		subjects.BlobsPut, subjects.BlobsGet,
	}
	for _, s := range want {
		if !seen[s] {
			t.Errorf("no endpoint %s", s)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("%d endpoints, want %d", len(seen), len(want))
	}
}

// TestDocEndpointTable checks that the table in doc.go is the endpoint
// table; on a mismatch it prints the table to paste.
func TestDocEndpointTable(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	_, _ = w.Write([]byte("//\tsubject\trequest\treply\twho may call\n"))
	for _, ep := range subjects.Endpoints() {
		req := strings.TrimPrefix(ep.Request.String(), "subjects.")
		if ep.Request.NumField() == 0 {
			req = "(empty)"
		}
		_, _ = w.Write([]byte("//\t" + ep.Subject + "\t" + req + "\t" + strings.TrimPrefix(ep.Reply.String(), "subjects.") + "\t" + string(ep.Access) + "\n"))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	// tabwriter pads the "//" column too: doc comments want one tab.
	var table strings.Builder
	for line := range strings.SplitSeq(strings.TrimSuffix(b.String(), "\n"), "\n") {
		table.WriteString("//\t" + strings.TrimLeft(strings.TrimPrefix(line, "//"), " ") + "\n")
	}
	if !strings.Contains(string(doc), table.String()) {
		t.Errorf("doc.go's endpoint table is not the endpoint table; want:\n%s", table.String())
	}
}
