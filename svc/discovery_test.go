package svc_test

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

// TestDiscovery asks what "nats micro ls/info/stats" ask, on micro's own
// discovery subjects.
func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	nc := e.admin.nc // admins may use $SRV.> under the auth callout

	ping, err := micro.ControlSubject(micro.PingVerb, "", "")
	if err != nil {
		t.Fatal(err)
	}
	pings := gather[micro.Ping](t, nc, ping, 4)
	names := map[string]string{}
	for _, p := range pings {
		if p.Type != micro.PingResponseType {
			t.Errorf("ping type %q", p.Type)
		}
		names[p.Name] = p.Version
	}
	// The control plane's three, and the node's routing service (package
	// router), which runs the services' version.
	want := map[string]string{subjects.UsersService: testVersion, subjects.RoomsService: testVersion, subjects.BlobsService: testVersion}
	all := maps.Clone(want)
	all[subjects.RouterService] = testVersion
	if !maps.Equal(names, all) {
		t.Fatalf("services %v, want %v", names, all)
	}
	t.Run(subjects.RouterService, func(t *testing.T) {
		subj, err := micro.ControlSubject(micro.InfoVerb, subjects.RouterService, "")
		if err != nil {
			t.Fatal(err)
		}
		info := gather[micro.Info](t, nc, subj, 1)[0]
		if len(info.Endpoints) != 1 || info.Endpoints[0].Subject != subjects.SendAll || info.Endpoints[0].QueueGroup != subjects.RouterQueue {
			t.Errorf("router info %+v, want one endpoint on %s in queue group %s", info, subjects.SendAll, subjects.RouterQueue)
		}
	})

	table := map[string]subjects.Endpoint{}
	bySvc := map[string][]string{}
	for _, ep := range subjects.Endpoints() {
		table[ep.Subject] = ep
		bySvc[ep.Service] = append(bySvc[ep.Service], ep.Subject)
	}
	if len(bySvc) != len(want) {
		t.Fatalf("the endpoint table has services %v, want %v", slices.Collect(maps.Keys(bySvc)), want)
	}
	for service, subjs := range bySvc {
		tc := struct {
			service  string
			subjects []string
		}{service, subjs}
		t.Run(tc.service, func(t *testing.T) {
			subj, err := micro.ControlSubject(micro.InfoVerb, tc.service, "")
			if err != nil {
				t.Fatal(err)
			}
			info := gather[micro.Info](t, nc, subj, 1)[0]
			if info.Name != tc.service || info.Version != testVersion || info.Description == "" || info.Type != micro.InfoResponseType {
				t.Errorf("info %s %s %q %s", info.Name, info.Version, info.Description, info.Type)
			}
			var got []string
			for _, ep := range info.Endpoints {
				got = append(got, ep.Subject)
				if ep.QueueGroup != micro.DefaultQueueGroup {
					t.Errorf("%s: queue group %q, want micro's default", ep.Subject, ep.QueueGroup)
				}
				for _, k := range []string{"summary", "access", "request", "response", "request_type", "response_type", "max_bytes"} {
					if ep.Metadata[k] == "" {
						t.Errorf("%s: no %s in metadata %v", ep.Subject, k, ep.Metadata)
					}
				}
				if te := table[ep.Subject]; ep.Metadata["summary"] != te.Summary || ep.Metadata["access"] != string(te.Access) || ep.Name != te.Name {
					t.Errorf("%s: name %q, metadata %v, want the table's %+v", ep.Subject, ep.Name, ep.Metadata, te)
				}
				for _, k := range []string{"request", "response"} {
					if !json.Valid([]byte(ep.Metadata[k])) {
						t.Errorf("%s: %s schema %q is not JSON", ep.Subject, k, ep.Metadata[k])
					}
				}
			}
			slices.Sort(got)
			slices.Sort(tc.subjects)
			if !slices.Equal(got, tc.subjects) {
				t.Errorf("endpoints %v, want %v", got, tc.subjects)
			}
		})
	}

	t.Run("metadata documents the wire types", func(t *testing.T) {
		subj, _ := micro.ControlSubject(micro.InfoVerb, subjects.RoomsService, "")
		info := gather[micro.Info](t, nc, subj, 1)[0]
		for _, ep := range info.Endpoints {
			if ep.Subject != subjects.RoomsRemove {
				continue
			}
			const req = `{"room_id":"string","pub":"string","rekey?":{"from_epoch":"integer","to_epoch":"integer","keys":{"<key>":"base64"},"grants":{"<key>":"base64"}},"owner_sig?":"base64"}`
			if ep.Metadata["request"] != req || ep.Metadata["request_type"] != "subjects.RemoveRequest" {
				t.Errorf("remove request metadata %q (%s), want %q", ep.Metadata["request"], ep.Metadata["request_type"], req)
			}
			if ep.Metadata["max_bytes"] != "4194304" {
				t.Errorf("remove max_bytes %q, want the bundle limit", ep.Metadata["max_bytes"])
			}
			return
		}
		t.Fatal("no remove endpoint")
	})

	t.Run("stats", func(t *testing.T) {
		decode[subjects.MineResponse](t, e.alice.request(t, subjects.RoomsMine, nil))
		wantError(t, e.alice.request(t, subjects.RoomsMine, []byte("[")), subjects.CodeBadRequest)
		subj, _ := micro.ControlSubject(micro.StatsVerb, subjects.RoomsService, "")
		stats := gather[micro.Stats](t, nc, subj, 1)[0]
		for _, ep := range stats.Endpoints {
			if ep.Subject != subjects.RoomsMine {
				continue
			}
			var data svc.StatsData
			if err := json.Unmarshal(ep.Data, &data); err != nil {
				t.Fatalf("stats data %s: %v", ep.Data, err)
			}
			if ep.NumRequests != 2 || data.Handled != 2 || data.Errors != 1 || data.ProcessingTime <= 0 || data.LastError == "" {
				t.Errorf("mine stats: %d requests, data %+v", ep.NumRequests, data)
			}
			return
		}
		t.Fatal("no stats for mine")
	})
}

// gather sends a discovery request and decodes the first n replies (more
// may come from other instances; none are expected here).
func gather[T any](t *testing.T, nc *nats.Conn, subject string, n int) []T {
	t.Helper()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(subject, inbox, nil); err != nil {
		t.Fatal(err)
	}
	out := make([]T, 0, n)
	for len(out) < n {
		m, err := sub.NextMsg(requestTimeout)
		if err != nil {
			t.Fatalf("%s: %d of %d replies: %v", subject, len(out), n, err)
		}
		var v T
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatalf("%s reply %s: %v", subject, m.Data, err)
		}
		out = append(out, v)
	}
	return out
}

// requestsOf is the request count of the endpoint on subject.
func requestsOf(endpoints []*micro.EndpointStats, subject string) int {
	for _, ep := range endpoints {
		if ep.Subject == subject {
			return ep.NumRequests
		}
	}
	return -1
}

// TestTwoInstances: two instances on two connections share the load and
// answer the same.
func TestTwoInstances(t *testing.T) {
	e := newEnv(t)
	second := e.secondInstance(t)
	room := e.createRoom(t, e.alice, subjects.ModeE2E)
	e.invite(t, e.alice, room, e.bob)

	wantRoom := call[subjects.RoomInfo](t, e.alice, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID})
	wantMembers := call[subjects.MembersResponse](t, e.alice, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID})
	for i := range 40 {
		u := []*user{e.alice, e.bob}[i%2]
		if got := call[subjects.RoomInfo](t, u, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}); !reflect.DeepEqual(got, wantRoom) {
			t.Fatalf("get %d: %+v, want %+v", i, got, wantRoom)
		}
		if got := call[subjects.MembersResponse](t, u, subjects.RoomsMembers, subjects.MembersRequest{RoomID: room.RoomID}); !reflect.DeepEqual(got, wantMembers) {
			t.Fatalf("members %d: %+v, want %+v", i, got, wantMembers)
		}
		wantError(t, e.carol.request(t, subjects.RoomsGet, subjects.RoomRequest{RoomID: room.RoomID}), subjects.CodeForbidden, "not a member")
	}
	// Random queue-group delivery: each instance got some of the 81 rooms.get
	// requests (the chance that one got none is 2^-80).
	first, other := requestsOf(e.svc.Rooms().Stats().Endpoints, subjects.RoomsGet), requestsOf(second.Rooms().Stats().Endpoints, subjects.RoomsGet)
	if first == 0 || other == 0 {
		t.Errorf("rooms.get requests per instance: %d and %d, want both used", first, other)
	}
}
