package svc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

// BenchmarkMembers measures signed rooms.members requests on an encrypted
// room of 10 and 100 members: the whole list (member records, user
// records and the current epoch's grants), and one member asked by pub (a
// receiver checking a sender), beside a raw micro echo on the same server
// in the same run, one client at a time. Besides the latency percentiles
// it reports each request's cost as a multiple of the echo's
// (x-echo).
//
//	go test -run '^$' -bench Members -benchtime 3s ./svc/
func BenchmarkMembers(b *testing.B) {
	e := newEnv(b, withConfig(func(c *svc.Config) { c.RateLimit, c.RateBurst = 1e6, 1<<20 }))
	echoSubject := startEcho(b, e)
	nc := e.alice.nc
	var echoNs float64
	b.Run("echo", func(b *testing.B) {
		start := time.Now()
		measure(b, []*nats.Conn{nc}, func(nc *nats.Conn) (*nats.Msg, error) {
			return nc.Request(echoSubject, []byte("{}"), requestTimeout)
		})
		echoNs = float64(time.Since(start).Nanoseconds()) / float64(b.N)
	})
	for _, n := range []int{10, 100} {
		room := e.createRoom(b, e.alice, subjects.ModeE2E)
		last := fillRoom(b, e, room, n-1)
		for _, tc := range []struct {
			name string
			body subjects.MembersRequest
			want int
		}{
			{"all", subjects.MembersRequest{RoomID: room.RoomID}, n},
			{"one", subjects.MembersRequest{RoomID: room.RoomID, Pub: last}, 1},
		} {
			if got := call[subjects.MembersResponse](b, e.alice, subjects.RoomsMembers, tc.body); len(got.Members) != tc.want {
				b.Fatalf("%s of %d: %d members listed", tc.name, n, len(got.Members))
			}
			b.Run(fmt.Sprintf("members=%d/%s", n, tc.name), func(b *testing.B) {
				start := time.Now()
				measure(b, []*nats.Conn{nc}, func(nc *nats.Conn) (*nats.Msg, error) {
					return nc.RequestMsg(e.alice.msg(b, subjects.RoomsMembers, tc.body), requestTimeout)
				})
				if echoNs > 0 {
					b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N)/echoNs, "x-echo")
				}
			})
		}
	}
}

// startEcho starts a raw micro echo on a subject of the rooms service's
// namespace, which the auth callout lets users publish to and the
// services' responder may answer on: the floor of a control-plane request.
func startEcho(b *testing.B, e *env) string {
	b.Helper()
	subject := subjects.RoomsGroup + ".bench-echo"
	echo, err := micro.AddService(e.serviceConn(b), micro.Config{
		Name:    "bench-echo",
		Version: "1.0.0",
		Endpoint: &micro.EndpointConfig{
			Subject: subject,
			Handler: micro.HandlerFunc(func(r micro.Request) { _ = r.Respond(r.Data()) }),
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = echo.Stop() })
	return subject
}

// fillRoom adds n registered users with encryption keys to room through
// the store (the services' checks are not what is measured), each with a
// sealed key and a grant of the room's epoch, and returns the last one.
func fillRoom(b *testing.B, e *env, room subjects.RoomInfo, n int) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var pub string
	for range n {
		u := e.newIdentity(b, "member")
		pub = u.pub
		if _, err := e.store.AddUser(ctx, kvstore.User{Pub: u.pub, Name: "member", EncKey: u.encKey, EncKeySig: randomBytes(b, 64)}); err != nil {
			b.Fatal(err)
		}
		key := kvstore.SealedKey{Sealed: sealedKey(b), Grant: grant(b)}
		if _, err := e.store.AddMember(ctx, room.RoomID, u.pub, subjects.RoleMember, room.Epoch, key); err != nil {
			b.Fatal(err)
		}
	}
	return pub
}
