package svc_test

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// BenchmarkControlPlane measures signed rooms.mine requests (signature,
// nonce claim and user lookup, two direct gets, JSON) beside a raw micro
// echo endpoint on the same server, in the same run, with 1 and 8
// concurrent clients, each on its own connection, with the buckets on file
// (as unibusd runs) and in memory. Every mine request is signed by the
// client as it is sent. Besides ns/op it reports requests per second and
// the p50 and p99 latency.
//
//	go test -run '^$' -bench ControlPlane -benchtime 5s ./svc/
func BenchmarkControlPlane(b *testing.B) {
	for _, storage := range []string{"file", "memory"} {
		var opts []envOption
		if storage == "file" {
			opts = append(opts, withFileStorage())
		}
		benchEnv(b, storage, newEnv(b, opts...))
	}
}

func benchEnv(b *testing.B, storage string, e *env) {
	var rooms []subjects.RoomInfo
	for range 5 {
		rooms = append(rooms, e.createRoom(b, e.alice, subjects.ModeE2E))
	}
	if got := call[subjects.MineResponse](b, e.alice, subjects.RoomsMine, nil); len(got.Rooms) != 5 {
		b.Fatalf("alice is in %d rooms, want 5", len(got.Rooms))
	}
	// The client signs as the Go client does: with an identity whose key
	// is expanded once.
	seed, err := e.alice.kp.Seed()
	if err != nil {
		b.Fatal(err)
	}
	id, err := identity.FromSeed(seed)
	if err != nil {
		b.Fatal(err)
	}
	signer := idSigner{id}

	// The echo answers on a subject of one of alice's rooms, which the
	// auth callout lets her publish to.
	echoSubject := rooms[0].Subject
	echo, err := micro.AddService(e.serviceConn(b), micro.Config{
		Name:    "bench-echo",
		Version: "1.0.0",
		Endpoint: &micro.EndpointConfig{
			Subject: echoSubject,
			Handler: micro.HandlerFunc(func(r micro.Request) { _ = r.Respond(r.Data()) }),
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = echo.Stop() })

	for _, clients := range []int{1, 8} {
		conns := make([]*nats.Conn, clients)
		for i := range conns {
			u := *e.alice
			e.connect(b, &u)
			conns[i] = u.nc
		}
		b.Run(fmt.Sprintf("%s/echo/clients=%d", storage, clients), func(b *testing.B) {
			measure(b, conns, func(nc *nats.Conn) (*nats.Msg, error) {
				return nc.Request(echoSubject, []byte("{}"), requestTimeout)
			})
		})
		b.Run(fmt.Sprintf("%s/mine/clients=%d", storage, clients), func(b *testing.B) {
			measure(b, conns, func(nc *nats.Conn) (*nats.Msg, error) {
				m := nats.NewMsg(subjects.RoomsMine)
				h, err := subjects.SignRequest(signer, subjects.RoomsMine, nil, time.Now())
				if err != nil {
					return nil, err
				}
				m.Header = h
				return nc.RequestMsg(m, requestTimeout)
			})
		})
	}
}

// idSigner adapts an identity to subjects.Signer.
type idSigner struct{ id *identity.Identity }

func (s idSigner) PublicKey() (string, error)      { return s.id.PublicKey(), nil }
func (s idSigner) Sign(msg []byte) ([]byte, error) { return s.id.Sign(msg) }

// measure runs b.N requests spread over one goroutine per connection and
// reports throughput and latency percentiles. A failed request or an error
// reply fails the benchmark.
func measure(b *testing.B, conns []*nats.Conn, do func(*nats.Conn) (*nats.Msg, error)) {
	var (
		next      atomic.Int64
		wg        sync.WaitGroup
		latencies = make([][]time.Duration, len(conns))
	)
	b.ResetTimer()
	start := time.Now()
	for i, nc := range conns {
		wg.Go(func() {
			own := make([]time.Duration, 0, b.N/len(conns)+1)
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				r, err := do(nc)
				own = append(own, time.Since(t0))
				if err != nil {
					b.Errorf("request: %v", err)
					return
				}
				if code := r.Header.Get(micro.ErrorCodeHeader); code != "" {
					b.Errorf("error reply %s %s", code, r.Header.Get(micro.ErrorHeader))
					return
				}
			}
			latencies[i] = own
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	all := slices.Concat(latencies...)
	if len(all) == 0 {
		return
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
