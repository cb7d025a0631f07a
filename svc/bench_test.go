package svc_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

// BenchmarkControlPlane measures signed rooms.mine requests (signature,
// nonce claim and user lookup, two direct gets, JSON) beside a raw micro
// echo endpoint on the same server, in the same run, with 1 and 8
// concurrent clients, each on its own connection, with the buckets on file
// (as unibusd runs) and in memory. Every mine request is signed by the
// client as it is sent; every client is the same identity, whose rate
// limit is raised out of the way (the limiter still runs). Besides ns/op it reports requests per second and
// the p50 and p99 latency.
//
//	go test -run '^$' -bench ControlPlane -benchtime 5s ./svc/
func BenchmarkControlPlane(b *testing.B) {
	for _, storage := range []string{"file", "memory"} {
		// Rate limiting stays on, out of the clients' way.
		opts := []envOption{withConfig(func(c *svc.Config) { c.RateLimit, c.RateBurst = 1e6, 1<<20 })}
		if storage == "file" {
			opts = append(opts, withFileStorage())
		}
		benchEnv(b, storage, newEnv(b, opts...))
	}
}

func benchEnv(b *testing.B, storage string, e *env) {
	for range 5 {
		e.createRoom(b, e.alice, subjects.ModeE2E)
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

	// The echo answers on a subject of the rooms service's namespace, which
	// the auth callout lets alice publish to and the services' responder
	// may subscribe to (and on which, like the services, it may reply
	// only into inboxes).
	echoSubject := subjects.RoomsGroup + ".bench-echo"
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

// BenchmarkFlood measures a good client's signed rooms.mine requests, one
// at a time on its own connection, with no flood (the baseline), during a
// flood of unsigned requests (16 connections of a registered attacker,
// each sending as fast as it is answered) and during a flood of connects
// with bad keys (16 goroutines: unregistered keys, forged signatures,
// account keys, garbage signatures), in the same run. Rate limiting is on
// but set out of the good client's way. Besides the good client's p50 and
// p99 latency it reports the flood's rate.
//
//	go test -run '^$' -bench Flood -benchtime 3000x ./svc/
func BenchmarkFlood(b *testing.B) {
	e := newEnv(b, withConfig(func(c *svc.Config) { c.RateLimit, c.RateBurst = 1e6, 1<<20 }))
	good := e.alice
	attacker := e.register(b, "attacker")
	flooders := make([]*nats.Conn, 16)
	for i := range flooders {
		u := *attacker
		e.connect(b, &u)
		flooders[i] = u.nc
	}
	seed, err := good.kp.Seed()
	if err != nil {
		b.Fatal(err)
	}
	id, err := identity.FromSeed(seed)
	if err != nil {
		b.Fatal(err)
	}
	signer := idSigner{id}
	mine := func(nc *nats.Conn) (*nats.Msg, error) {
		m := nats.NewMsg(subjects.RoomsMine)
		h, err := subjects.SignRequest(signer, subjects.RoomsMine, nil, time.Now())
		if err != nil {
			return nil, err
		}
		m.Header = h
		return nc.RequestMsg(m, requestTimeout)
	}
	victim := e.bob

	for _, flood := range []struct {
		name string
		one  func(i int) bool // one flood action; false when it misbehaved
	}{
		{"baseline", nil},
		{"unsigned-requests", func(i int) bool {
			r, err := flooders[i].Request(subjects.RoomsMine, []byte("{}"), requestTimeout)
			return err == nil && r.Header.Get(micro.ErrorCodeHeader) == "401"
		}},
		{"bad-key-connects", func(i int) bool {
			nc, err := nats.Connect(e.node.ClientURL(), append(badConnect(i, victim), nats.MaxReconnects(0), nats.Timeout(5*time.Second))...)
			if err == nil {
				nc.Close()
				return false
			}
			return errors.Is(err, nats.ErrAuthorization)
		}},
	} {
		b.Run(flood.name, func(b *testing.B) {
			var (
				count, wrong atomic.Int64
				stop         = make(chan struct{})
				wg           sync.WaitGroup
			)
			if flood.one != nil {
				for i := range len(flooders) {
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							if !flood.one(i) {
								wrong.Add(1)
							}
							count.Add(1)
						}
					})
				}
				time.Sleep(200 * time.Millisecond) // let the flood build up
			}
			start, before := time.Now(), count.Load()
			measure(b, []*nats.Conn{good.nc}, mine)
			flooded := count.Load() - before
			elapsed := time.Since(start)
			close(stop)
			wg.Wait()
			if wrong.Load() != 0 {
				b.Errorf("%d flood actions not refused as they should be", wrong.Load())
			}
			if flood.one != nil {
				b.ReportMetric(float64(flooded)/elapsed.Seconds(), "flood/s")
			}
		})
	}
}

// badConnect returns the connect options of a hostile connect, by turns:
// a fresh unregistered key, a forged signature for a registered key, an
// account key, a garbage signature.
func badConnect(i int, victim *user) []nats.Option {
	switch i % 4 {
	case 0:
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil
		}
		pub, _ := kp.PublicKey()
		return []nats.Option{nats.Nkey(pub, kp.Sign)}
	case 1:
		kp, err := nkeys.CreateUser()
		if err != nil {
			return nil
		}
		return []nats.Option{nats.Nkey(victim.pub, kp.Sign)}
	case 2:
		kp, err := nkeys.CreateAccount()
		if err != nil {
			return nil
		}
		pub, _ := kp.PublicKey()
		return []nats.Option{nats.Nkey(pub, kp.Sign)}
	default:
		return []nats.Option{nats.Nkey(victim.pub, func([]byte) ([]byte, error) { return make([]byte, 64), nil })}
	}
}
