package client_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// maxInFlight bounds frames published but not yet received, so that a
// fast publisher never overruns the subscriber's pending limits.
const maxInFlight = 2000

func benchPeer(b *testing.B, n *node.Node, name string) *client.Conn {
	b.Helper()
	id := nodetest.AddUser(b, n, name, false)
	c, err := client.Connect(context.Background(), n.ClientURL(), id)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	if err := c.SetEncryptionKey(context.Background(), filepath.Join(b.TempDir(), "enc")); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkFrames measures end-to-end throughput publisher → subscriber
// through one server: sealed and signed frames (Sealed: seal, sign,
// publish; verify, replay check, decrypt, deliver) beside raw NATS pub/sub
// of the same payload size on the same connections and subject (Raw), in
// the same run. Ratio = Sealed frames/s ÷ Raw frames/s.
func BenchmarkFrames(b *testing.B) {
	ctx := context.Background()
	n := nodetest.Run(b)
	alice, bob := benchPeer(b, n, "alice"), benchPeer(b, n, "bob")
	room, err := alice.CreateRoom(ctx, "bench", subjects.ModeE2E)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bob.Identity().PublicKey()); err != nil {
		b.Fatal(err)
	}
	if _, err := bob.Accept(ctx, room.RoomID); err != nil {
		b.Fatal(err)
	}
	// Wait for bob's permission refresh (the invite reconnects him).
	waitRoomUsable(b, alice, bob, room.RoomID)

	for _, size := range []int{256, 4096} {
		payload := make([]byte, size)
		b.Run(fmt.Sprintf("%dB/Raw", size), func(b *testing.B) {
			var received atomic.Int64
			sub, err := bob.NATS().Subscribe(room.Subject, func(*nats.Msg) { received.Add(1) })
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			if err := bob.NATS().Flush(); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			sent := int64(0)
			for b.Loop() {
				for sent-received.Load() > maxInFlight {
					time.Sleep(50 * time.Microsecond)
				}
				if err := alice.NATS().Publish(room.Subject, payload); err != nil {
					b.Fatal(err)
				}
				sent++
			}
			waitCount(b, &received, sent)
			b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "frames/s")
		})
		b.Run(fmt.Sprintf("%dB/Sealed", size), func(b *testing.B) {
			var received, rejected atomic.Int64
			sub, err := bob.Subscribe(ctx, room.RoomID, func(client.Message) { received.Add(1) }, func(error) { rejected.Add(1) })
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = sub.Unsubscribe() }()
			b.SetBytes(int64(size))
			sent := int64(0)
			for b.Loop() {
				for sent-received.Load()-rejected.Load() > maxInFlight {
					time.Sleep(50 * time.Microsecond)
				}
				if _, err := alice.Publish(ctx, room.RoomID, payload); err != nil {
					b.Fatal(err)
				}
				sent++
			}
			waitCount(b, &received, sent)
			if rejected.Load() > 0 {
				b.Fatalf("%d frames rejected", rejected.Load())
			}
			b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

func waitRoomUsable(b *testing.B, pub, sub *client.Conn, roomID string) {
	b.Helper()
	got := make(chan struct{}, 1)
	s, err := sub.Subscribe(context.Background(), roomID, func(client.Message) {
		select {
		case got <- struct{}{}:
		default:
		}
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Unsubscribe() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := pub.Publish(context.Background(), roomID, []byte("warm-up")); err != nil {
			b.Fatal(err)
		}
		select {
		case <-got:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	b.Fatal("room not usable within 10s")
}

func waitCount(b *testing.B, n *atomic.Int64, want int64) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("received %d of %d", n.Load(), want)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkRekey1000 measures a rekey of a 1,000-member encrypted room end
// to end: one members request (with every member's encryption key and
// grant), the owner's check of 1,000 grants, a fresh room key sealed to
// each member with HPKE (ML-KEM-768 + X25519) and granted to it, and one
// rekey request whose keys and grants the service stores.
func BenchmarkRekey1000(b *testing.B) {
	ctx := context.Background()
	n := nodetest.Run(b, func(c *node.Config) {
		c.Store.OpTimeout = time.Minute
		c.Services.MaxMembersPerRoom = -1
	})
	room := newBenchRoom(b, n, subjects.ModeE2E)
	room.addMembers(b, 999)
	owner := room.connect(b, room.owner)
	for b.Loop() {
		if _, err := owner.Rekey(ctx, room.id); err != nil {
			b.Fatal(err)
		}
	}
}

// benchRoom is a room made straight through the store (setup, not
// measured): its owner, its room key of epoch 1 in an encrypted room, and
// its members, each with the key sealed to it and the owner's grant. Every
// identity shares one encryption key: sealing and opening cost the same
// whoever's key it is.
type benchRoom struct {
	n       *node.Node
	id      string
	subject string
	mode    string
	owner   *identity.Identity
	key     []byte // the room key of epoch 1; nil in a cleartext room
	enc     *e2e.EncryptionKey
}

func newBenchRoom(b *testing.B, n *node.Node, mode string) *benchRoom {
	b.Helper()
	enc, _, err := client.LoadOrCreateEncryptionKey(filepath.Join(b.TempDir(), "members.enc"))
	if err != nil {
		b.Fatal(err)
	}
	r := &benchRoom{n: n, mode: mode, enc: enc, owner: nodetest.NewIdentity(b)}
	r.register(b, r.owner)
	id, salt := subjects.NewRoomID(r.owner.PublicKey(), mode)
	r.id = id
	var ownerKey kvstore.SealedKey
	if mode == subjects.ModeE2E {
		r.key = e2e.NewRoomKey()
		ownerKey = r.sealedKey(b, r.owner.PublicKey())
	}
	room, err := n.Store.CreateRoom(context.Background(), kvstore.Room{ID: id, Salt: salt, Mode: mode, Owner: r.owner.PublicKey()}, ownerKey)
	if err != nil {
		b.Fatal(err)
	}
	r.subject = room.Subject
	return r
}

// register adds id as a user with the shared encryption key.
func (r *benchRoom) register(b *testing.B, id *identity.Identity) {
	b.Helper()
	issued := time.Now().Truncate(time.Second)
	sig, err := subjects.SignEncKeyBinding(id.KeyPair(), r.enc.PublicKey(), 1, issued)
	if err != nil {
		b.Fatal(err)
	}
	u := kvstore.User{Pub: id.PublicKey(), Name: id.PublicKey()[:8], EncKey: r.enc.PublicKey(), EncKeySig: sig, EncKeyVersion: 1, EncKeyIssuedAt: issued}
	if _, err := r.n.Store.AddUser(context.Background(), u); err != nil {
		b.Fatal(err)
	}
}

// sealedKey is the room key of epoch 1 sealed to pub with the owner's
// grant; empty in a cleartext room.
func (r *benchRoom) sealedKey(b *testing.B, pub string) kvstore.SealedKey {
	b.Helper()
	if r.key == nil {
		return kvstore.SealedKey{}
	}
	sealed, err := e2e.SealRoomKey(r.enc.PublicKey(), r.id, 1, pub, r.key)
	if err != nil {
		b.Fatal(err)
	}
	return kvstore.SealedKey{Sealed: sealed, Grant: r.grant(b, pub)}
}

// grant is the owner's grant of the room key of epoch 1 to pub.
func (r *benchRoom) grant(b *testing.B, pub string) []byte {
	b.Helper()
	g, err := e2e.SignGrant(r.owner, r.id, 1, pub, r.key)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// add registers ids (unless registered) and makes them members.
func (r *benchRoom) add(b *testing.B, ids []*identity.Identity, registered bool) {
	b.Helper()
	work := make(chan *identity.Identity)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for id := range work {
				if !registered {
					r.register(b, id)
				}
				if _, err := r.n.Store.AddMember(context.Background(), r.id, id.PublicKey(), subjects.RoleMember, r.epoch(), r.sealedKey(b, id.PublicKey())); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// addMembers adds count new users as members and returns them.
func (r *benchRoom) addMembers(b *testing.B, count int) []*identity.Identity {
	b.Helper()
	ids := make([]*identity.Identity, count)
	for i := range ids {
		ids[i] = nodetest.NewIdentity(b)
	}
	r.add(b, ids, false)
	return ids
}

// epoch is the room's epoch as the store made it.
func (r *benchRoom) epoch() uint64 {
	if r.key == nil {
		return 0
	}
	return 1
}

// connect connects id to the node with the shared encryption key.
func (r *benchRoom) connect(b *testing.B, id *identity.Identity) *client.Conn {
	b.Helper()
	c, err := client.Connect(context.Background(), r.n.ClientURL(), id, client.WithEncryptionKey(r.enc))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// BenchmarkFirstFrame1000 measures the first frame of a new sender in a
// 1,000-member encrypted room reaching every member: 1,000 client
// connections subscribed to the room, a member who never sent before
// publishes one sealed frame, and the time until all 1,000 subscribers
// delivered it (each checks the signature and, for the first time, the
// sender's key grant, then decrypts: no request). Beside it, in the same
// run on the same connections, raw NATS fan-out of a payload of the same
// size to the same 1,000 connections (the floor). Metrics: milliseconds
// of each per frame and their ratio. The first frame must reach everyone
// within a second.
func BenchmarkFirstFrame1000(b *testing.B) {
	const members = 1000
	ctx := context.Background()
	n := nodetest.Run(b, func(c *node.Config) {
		c.Store.OpTimeout = time.Minute
		c.Services.MaxMembersPerRoom = -1
		c.Services.RateLimit = -1
	})
	room := newBenchRoom(b, n, subjects.ModeE2E)
	floor := newBenchRoom(b, n, subjects.ModeCleartext) // its subject carries the raw fan-out
	ids := room.addMembers(b, members)
	floor.add(b, ids, true)

	// Every receiver counts deliveries of the current round's frame on
	// both subjects; the last one of a round closes its channel.
	type round struct {
		id     string // the payload that counts
		count  atomic.Int64
		done   chan struct{}
		reject atomic.Pointer[error]
	}
	var current atomic.Pointer[round]
	deliver := func(data string) {
		r := current.Load()
		if r != nil && data == r.id && r.count.Add(1) == members {
			close(r.done)
		}
	}
	conns := make(chan *identity.Identity)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 16 {
		wg.Go(func() {
			for id := range conns {
				c := room.connect(b, id)
				if _, err := c.Subscribe(ctx, room.id, func(m client.Message) { deliver(string(m.Data)) }, func(err error) {
					if r := current.Load(); r != nil {
						r.reject.Store(&err)
					}
				}); err != nil {
					failed.Store(err)
					continue
				}
				if _, err := c.NATS().Subscribe(floor.subject, func(m *nats.Msg) { deliver(string(m.Data[:min(len(m.Data), 36)])) }); err != nil {
					failed.Store(err)
				}
				if err := c.NATS().Flush(); err != nil {
					failed.Store(err)
				}
			}
		})
	}
	for _, id := range ids {
		conns <- id
	}
	close(conns)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}

	var sealedTotal, rawTotal time.Duration
	wait := func(r *round) {
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			var last error
			if p := r.reject.Load(); p != nil {
				last = *p
			}
			b.Fatalf("%d of %d receivers got the frame within 30s (last rejection: %v)", r.count.Load(), members, last)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		// A new sender: a member of both rooms, connected after joining.
		sender := nodetest.NewIdentity(b)
		room.add(b, []*identity.Identity{sender}, false)
		floor.add(b, []*identity.Identity{sender}, true)
		sc := room.connect(b, sender)
		s, err := e2e.NewSealer(e2e.SealerConfig{Identity: sender, Room: room.id, Epoch: 1, RoomKey: room.key, Grant: room.grant(b, sender.PublicKey())})
		if err != nil {
			b.Fatal(err)
		}
		payload := fmt.Sprintf("frame %-30d", i) // 36 bytes
		_, wire, err := s.Seal(e2e.Message{Payload: []byte(payload)}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		raw := append([]byte(fmt.Sprintf("raw %-32d", i)), make([]byte, len(wire)-36)...)
		b.StartTimer()

		r := &round{id: string(raw[:36]), done: make(chan struct{})}
		current.Store(r)
		start := time.Now()
		if err := sc.NATS().Publish(floor.subject, raw); err != nil {
			b.Fatal(err)
		}
		wait(r)
		rawTotal += time.Since(start)

		r = &round{id: payload, done: make(chan struct{})}
		current.Store(r)
		start = time.Now()
		if err := sc.NATS().Publish(room.subject, wire); err != nil {
			b.Fatal(err)
		}
		wait(r)
		sealedTotal += time.Since(start)
	}
	sealedMs := float64(sealedTotal.Microseconds()) / 1e3 / float64(b.N)
	rawMs := float64(rawTotal.Microseconds()) / 1e3 / float64(b.N)
	b.ReportMetric(sealedMs, "ms/first-frame")
	b.ReportMetric(rawMs, "ms/raw-fanout")
	b.ReportMetric(sealedMs/rawMs, "first-frame/raw")
	if sealedMs >= 1000 {
		b.Errorf("the first frame took %.0f ms to reach %d members, want under a second", sealedMs, members)
	}
}
