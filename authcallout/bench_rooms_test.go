package authcallout_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// plainRooms is a store whose rooms the callout reads with the plain read
// (any replica), as before LeaderRoomLister: it hides the store's leader
// read.
type plainRooms struct{ authcallout.Store }

// BenchmarkConnectRoomsRead measures a member's connect and close through
// the callout, the member of a few rooms, with its rooms read as fresh as
// the leader knows them (what the callout does) and, in the same loop on a
// twin server, with the plain read that any replica answers (the floor).
// Ratio = leader ns ÷ plain ns.
//
//	go test -run '^$' -bench ConnectRoomsRead -benchtime 2000x ./authcallout/
func BenchmarkConnectRoomsRead(b *testing.B) {
	for _, rooms := range []int{0, 10} {
		b.Run(map[int]string{0: "no-rooms", 10: "10-rooms"}[rooms], func(b *testing.B) {
			leader := startKickBus(b)
			plain := startKickBusWith(b, func(st *kvstore.Store) authcallout.Store { return plainRooms{st} })
			id := nodetest.NewIdentity(b)
			for _, bus := range []*kickBus{leader, plain} {
				owner := addUser(b, bus.store, "owner")
				if _, err := bus.store.AddUser(context.Background(), kvstore.User{Pub: id.PublicKey()}); err != nil {
					b.Fatal(err)
				}
				for range rooms {
					room := newCleartextRoom(b, bus.store, owner)
					if _, err := bus.store.AddMember(context.Background(), room, id.PublicKey(), subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
						b.Fatal(err)
					}
				}
			}
			connect := func(url string) time.Duration {
				start := time.Now()
				nc, err := nats.Connect(url, nodetest.ConnectOptions(id)...)
				if err != nil {
					b.Fatal(err)
				}
				took := time.Since(start)
				nc.Close()
				return took
			}
			var leaderTime, plainTime time.Duration
			for b.Loop() {
				leaderTime += connect(leader.url)
				plainTime += connect(plain.url)
			}
			n := float64(b.N)
			b.ReportMetric(float64(leaderTime.Nanoseconds())/n, "leader-ns/connect")
			b.ReportMetric(float64(plainTime.Nanoseconds())/n, "plain-ns/connect")
			b.ReportMetric(float64(leaderTime)/float64(plainTime), "ratio")
		})
	}
}
