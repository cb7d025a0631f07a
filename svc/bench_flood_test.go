package svc_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

// Registered users in the flood benchmark and test: each on its own
// connection, at registeredRate requests a second, under the default rate
// limit (which stays on), alternating users.get of itself and rooms.mine.
const (
	registeredUsers    = 8
	registeredRate     = 40
	requestsPerRound   = 20 // per user and benchmark iteration
	floodConns         = 4
	floodWorkersPerCon = 16
	// floodKeys is how many made-up keys (and signed requests) a flood
	// uses by turns: enough that none comes back within the second a key
	// found unregistered is remembered, at the rates measured here.
	floodKeys = 1 << 15
)

// BenchmarkRegisteredUnderUnregisteredFlood measures registered users'
// signed requests (registeredUsers users, each at registeredRate a second
// on its own connection: users.get of itself and rooms.mine by turns), in
// the same run without a flood (the floor) and then during a flood of
// requests from keys nobody registered, sent to the same endpoints over
// floodConns connections of a registered attacker, each with
// floodWorkersPerCon requests in flight, every one followed by the next as
// soon as it is answered. The floods (floodKind), each of floodKeys
// requests signed beforehand and sent by turns: validly signed by as many
// made-up keys, validly signed by one made-up key, and made-up keys with
// garbage signatures. It reports the registered
// users' p50 and p99 latency, quiet and flooded, the ratio of the p99s,
// the registered requests not served during the flood, and the flood's
// rate. One iteration is requestsPerRound requests of every registered
// user. The services log at info level, as unibusd does by default.
//
//	go test -run '^$' -bench RegisteredUnderUnregisteredFlood -benchtime 5x ./svc/
func BenchmarkRegisteredUnderUnregisteredFlood(b *testing.B) {
	// Logged as unibusd logs by default: refusals at debug level are not
	// formatted at all.
	e := newEnv(b, withConfig(func(c *svc.Config) {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}))
	users := e.registeredClients(b, registeredUsers)
	conns := e.attackerConns(b, floodConns)
	keys := madeUpKeys(b, floodKeys)
	for _, kind := range []floodKind{floodMadeUpKeys, floodOneKey, floodGarbage} {
		msgs := floodMessages(b, kind, keys, floodKeys)
		b.Run(kind.String(), func(b *testing.B) {
			quiet := runRegistered(b, users, b.N*requestsPerRound)
			f := startFlood(b, msgs, conns, floodWorkersPerCon, e.node.StoreConn)
			defer f.stop()
			f.waitAnswered(b, 1000)
			before, start := f.answered.Load(), time.Now()
			flooded := runRegistered(b, users, b.N*requestsPerRound)
			rate := float64(f.answered.Load()-before) / time.Since(start).Seconds()
			f.stop()
			b.StopTimer()

			q99, f99 := quiet.percentile(0.99), flooded.percentile(0.99)
			b.ReportMetric(quiet.percentile(0.50), "p50-quiet-µs")
			b.ReportMetric(q99, "p99-quiet-µs")
			b.ReportMetric(flooded.percentile(0.50), "p50-flood-µs")
			b.ReportMetric(f99, "p99-flood-µs")
			b.ReportMetric(f99/q99, "p99-ratio")
			b.ReportMetric(float64(len(flooded.failed)), "failed")
			b.ReportMetric(rate, "flood/s")
			if len(quiet.failed) > 0 {
				b.Errorf("%d registered requests failed without a flood: %v", len(quiet.failed), quiet.failed[0])
			}
			if len(flooded.failed) > 0 {
				b.Logf("%d registered requests failed during the flood, e.g. %v", len(flooded.failed), flooded.failed[0])
			}
			b.Logf("flood answers by code: %v", f.answers())
		})
	}
}

// registeredClient is a registered user as a bot runs it: its own
// connection, an identity whose key is expanded once.
type registeredClient struct {
	pub    string
	nc     *nats.Conn
	signer idSigner
}

// registeredClients registers n users and returns them as clients.
func (e *env) registeredClients(t testing.TB, n int) []registeredClient {
	t.Helper()
	out := make([]registeredClient, n)
	for i := range out {
		u := e.register(t, "registered-"+itoa(i))
		seed, err := u.kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		id, err := identity.FromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = registeredClient{pub: u.pub, nc: u.nc, signer: idSigner{id}}
	}
	return out
}

// request signs and sends one request: users.get of itself or rooms.mine.
func (c registeredClient) request(i int) (*nats.Msg, error) {
	subject := floodSubjects[i%len(floodSubjects)]
	var body []byte
	if subject == subjects.UsersGet {
		body, _ = json.Marshal(subjects.GetUserRequest{Pub: c.pub})
	}
	m := nats.NewMsg(subject)
	m.Data = body
	h, err := subjects.SignRequest(c.signer, subject, body, time.Now())
	if err != nil {
		return nil, err
	}
	m.Header = h
	return c.nc.RequestMsg(m, requestTimeout)
}

// registeredRun is the outcome of runRegistered.
type registeredRun struct {
	latencies []time.Duration // sorted
	failed    []string        // requests not served: error or error reply
}

// percentile returns the latency at p (0..1) in microseconds.
func (r registeredRun) percentile(p float64) float64 {
	if len(r.latencies) == 0 {
		return 0
	}
	return float64(r.latencies[min(len(r.latencies)-1, int(p*float64(len(r.latencies))))].Microseconds())
}

// runRegistered makes n requests as each of users, at registeredRate a
// second, and returns their latencies and failures.
func runRegistered(t testing.TB, users []registeredClient, n int) registeredRun {
	t.Helper()
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		out registeredRun
	)
	for _, u := range users {
		wg.Go(func() {
			own := make([]time.Duration, 0, n)
			var failed []string
			next := time.Now()
			for i := range n {
				// Pacing, not synchronization: a user's own rate.
				time.Sleep(time.Until(next))
				next = next.Add(time.Second / registeredRate)
				t0 := time.Now()
				r, err := u.request(i)
				own = append(own, time.Since(t0))
				switch {
				case err != nil:
					failed = append(failed, err.Error())
				case r.Header.Get(micro.ErrorCodeHeader) != "":
					failed = append(failed, r.Header.Get(micro.ErrorCodeHeader)+" "+r.Header.Get(micro.ErrorHeader))
				}
			}
			mu.Lock()
			out.latencies = append(out.latencies, own...)
			out.failed = append(out.failed, failed...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(out.latencies)
	return out
}
