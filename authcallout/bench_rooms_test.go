package authcallout_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/tests/nodetest"
)

// BenchmarkConnectRooms measures, in the same run on the same server, a
// connect (and close) through the callout and the size of the user JWT it
// issues, for a member of 10 rooms and for a member of 1,000: the callout
// reads no rooms, so neither grows. ratio-connect = the 1,000-room
// member's ns ÷ the 10-room member's; ratio-jwt likewise for the bytes of
// their JWTs (1 exactly).
//
//	go test -run '^$' -bench ConnectRooms -benchtime 500x ./authcallout/
func BenchmarkConnectRooms(b *testing.B) {
	bus := startKickBus(b)
	tap := bus.tapIssued(b)
	owner := addUser(b, bus.store, "owner")
	few, many := addUser(b, bus.store, "few"), addUser(b, bus.store, "many")
	joinRooms(b, bus.store, owner, few, 10)
	joinRooms(b, bus.store, owner, many, 1000)
	// The JWTs of a connect each, then the connects alone.
	fewJWT, manyJWT := len(tap.connect(b, bus.url, few)), len(tap.connect(b, bus.url, many))
	if err := tap.sub.Unsubscribe(); err != nil {
		b.Fatal(err)
	}

	connect := func(id *identity.Identity) time.Duration {
		start := time.Now()
		nc, err := nats.Connect(bus.url, nodetest.ConnectOptions(id)...)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		nc.Close()
		return took
	}
	var fewTime, manyTime time.Duration
	for b.Loop() {
		fewTime += connect(few)
		manyTime += connect(many)
	}
	n := float64(b.N)
	b.ReportMetric(float64(fewTime.Nanoseconds())/n, "10-rooms-ns/connect")
	b.ReportMetric(float64(manyTime.Nanoseconds())/n, "1000-rooms-ns/connect")
	b.ReportMetric(float64(manyTime)/float64(fewTime), "ratio-connect")
	b.ReportMetric(float64(fewJWT), "10-rooms-jwt-bytes")
	b.ReportMetric(float64(manyJWT), "1000-rooms-jwt-bytes")
	b.ReportMetric(float64(manyJWT)/float64(fewJWT), "ratio-jwt")
}
