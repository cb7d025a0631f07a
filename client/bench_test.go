package client_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

// benchNode starts a node whose router neither limits a member's rate nor
// refuses sends for a full queue: the benchmarks measure throughput.
func benchNode(b *testing.B, more ...nodetest.Option) *node.Node {
	b.Helper()
	return nodetest.Run(b, append([]nodetest.Option{func(c *node.Config) {
		c.Router.SendRate = -1
		c.Router.ShardQueue = 1 << 16
	}}, more...)...)
}

// BenchmarkFrames measures end-to-end throughput publisher → subscriber:
// sealed and signed frames sent fire-and-forget through the router, which
// stores and delivers them (Sealed: seal, sign, send; route, store,
// deliver; verify, replay check, decrypt, deliver in order), beside raw
// NATS of the same payload size published by the router's connection into
// the subscriber's delivery subject (Raw: one hop, no store), in the same
// run. Ratio = Sealed frames/s ÷ Raw frames/s.
func BenchmarkFrames(b *testing.B) {
	ctx := context.Background()
	n := benchNode(b)
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
	waitRoomUsable(b, alice, bob, room.RoomID)
	deliveries, err := subjects.Deliver(bob.Identity().PublicKey(), room.RoomID)
	if err != nil {
		b.Fatal(err)
	}

	for _, size := range []int{256, 4096} {
		payload := make([]byte, size)
		var rawRate float64
		b.Run(fmt.Sprintf("%dB/Raw", size), func(b *testing.B) {
			var received atomic.Int64
			sub, err := bob.NATS().Subscribe(deliveries, func(*nats.Msg) { received.Add(1) })
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
				if err := n.RouterConn.Publish(deliveries, payload); err != nil {
					b.Fatal(err)
				}
				sent++
			}
			waitCount(b, &received, sent)
			rawRate = float64(sent) / b.Elapsed().Seconds()
			b.ReportMetric(rawRate, "frames/s")
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
				if _, err := alice.Publish(ctx, room.RoomID, payload, client.NoAck()); err != nil {
					b.Fatal(err)
				}
				sent++
			}
			waitCount(b, &received, sent)
			if rejected.Load() > 0 {
				b.Fatalf("%d frames rejected", rejected.Load())
			}
			rate := float64(sent) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "frames/s")
			if rawRate > 0 {
				b.ReportMetric(rate/rawRate, "sealed/raw")
			}
		})
	}
}

// BenchmarkSend measures the sender's side, in the same run and of the
// same frame size: acknowledged sealed sends one after the other (seal,
// sign, route, store, acknowledge: Publish), raw JetStream acknowledged
// publishes of a payload of the frame's size into the same stream (the
// floor: one store round trip), and fire-and-forget sealed sends
// (Publish with NoAck, timed until the router stored them all: a last
// acknowledged send behind them). Metrics: sends/s of each and their
// ratios to the floor.
func BenchmarkSend(b *testing.B) {
	const perRound = 200
	ctx := context.Background()
	n := benchNode(b)
	alice := benchPeer(b, n, "alice")
	room, err := alice.CreateRoom(ctx, "bench", subjects.ModeE2E)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 256)
	probe, err := alice.Publish(ctx, room.RoomID, payload)
	if err != nil {
		b.Fatal(err)
	}
	js, err := jetstream.New(n.StoreConn)
	if err != nil {
		b.Fatal(err)
	}
	stream, err := js.Stream(ctx, kvstore.StreamRoomLog)
	if err != nil {
		b.Fatal(err)
	}
	stored, err := stream.GetMsg(ctx, probe.Seq)
	if err != nil {
		b.Fatal(err)
	}
	raw := make([]byte, len(stored.Data))
	floorRoom, _ := subjects.NewRoomID(alice.Identity().PublicKey(), subjects.ModeE2E)
	floorSubject, err := subjects.Room(floorRoom)
	if err != nil {
		b.Fatal(err)
	}

	var rawTime, ackedTime, noAckTime time.Duration
	rounds := 0
	for b.Loop() {
		start := time.Now()
		for range perRound {
			if _, err := js.Publish(ctx, floorSubject, raw); err != nil {
				b.Fatal(err)
			}
		}
		rawTime += time.Since(start)

		start = time.Now()
		for range perRound {
			if _, err := alice.Publish(ctx, room.RoomID, payload); err != nil {
				b.Fatal(err)
			}
		}
		ackedTime += time.Since(start)

		start = time.Now()
		for range perRound - 1 {
			if _, err := alice.Publish(ctx, room.RoomID, payload, client.NoAck()); err != nil {
				b.Fatal(err)
			}
		}
		// The router handles a room's sends in arrival order: this one's
		// acknowledgement follows the storing of all before it.
		if _, err := alice.Publish(ctx, room.RoomID, payload); err != nil {
			b.Fatal(err)
		}
		noAckTime += time.Since(start)
		rounds++
	}
	rate := func(d time.Duration) float64 { return float64(rounds*perRound) / d.Seconds() }
	b.ReportMetric(rate(rawTime), "raw-js-acked/s")
	b.ReportMetric(rate(ackedTime), "sealed-acked/s")
	b.ReportMetric(rate(noAckTime), "sealed-noack/s")
	b.ReportMetric(rate(ackedTime)/rate(rawTime), "acked/raw")
	b.ReportMetric(rate(noAckTime)/rate(rawTime), "noack/raw")
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
	room, err := n.Store.CreateRoom(context.Background(), kvstore.Room{ID: id, Salt: salt, Mode: mode, Owner: r.owner.PublicKey(), History: subjects.HistoryKeep}, ownerKey)
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
// sends one sealed frame, which the router stores and delivers to each
// member, and the time until all 1,000 subscribers delivered it (each
// checks the signature and, for the first time, the sender's key grant,
// then decrypts: no request). Beside it, in the same run on the same
// connections, raw NATS fan-out of a payload of the same size into the
// same 1,000 members' delivery subjects from the router's connection (the
// floor: what the router publishes, without the store and the checks).
// Metrics: milliseconds of each per frame and their ratio. The first frame
// must reach everyone within a second.
func BenchmarkFirstFrame1000(b *testing.B) {
	const members = 1000
	ctx := context.Background()
	n := benchNode(b, func(c *node.Config) {
		c.Store.OpTimeout = time.Minute
		c.Services.MaxMembersPerRoom = -1
		c.Services.RateLimit = -1
	})
	room := newBenchRoom(b, n, subjects.ModeE2E)
	ids := room.addMembers(b, members)
	// The floor's deliveries go to a room of their own (no such room is
	// needed: the router's connection publishes them).
	floorRoom, _ := subjects.NewRoomID(room.owner.PublicKey(), subjects.ModeCleartext)
	floorSubjects := make([]string, len(ids))
	for i, id := range ids {
		var err error
		if floorSubjects[i], err = subjects.Deliver(id.PublicKey(), floorRoom); err != nil {
			b.Fatal(err)
		}
	}

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
	conns := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 16 {
		wg.Go(func() {
			for i := range conns {
				c := room.connect(b, ids[i])
				if _, err := c.Subscribe(ctx, room.id, func(m client.Message) { deliver(string(m.Data)) }, func(err error) {
					if r := current.Load(); r != nil {
						r.reject.Store(&err)
					}
				}); err != nil {
					failed.Store(err)
					continue
				}
				if _, err := c.NATS().Subscribe(floorSubjects[i], func(m *nats.Msg) { deliver(string(m.Data[:min(len(m.Data), 36)])) }); err != nil {
					failed.Store(err)
				}
				if err := c.NATS().Flush(); err != nil {
					failed.Store(err)
				}
			}
		})
	}
	for i := range ids {
		conns <- i
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
		// A new sender: a member, connected after joining, whom the router
		// knows as one (a frame that is not one is refused with 400, after
		// the membership check, and delivered to no one).
		sender := nodetest.NewIdentity(b)
		room.add(b, []*identity.Identity{sender}, false)
		sc := room.connect(b, sender)
		send, err := subjects.Send(room.id, sender.PublicKey())
		if err != nil {
			b.Fatal(err)
		}
		waitMember(b, sc.NATS(), send)
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
		for _, subject := range floorSubjects {
			if err := n.RouterConn.Publish(subject, raw); err != nil {
				b.Fatal(err)
			}
		}
		wait(r)
		rawTotal += time.Since(start)

		r = &round{id: payload, done: make(chan struct{})}
		current.Store(r)
		start = time.Now()
		if err := sc.NATS().Publish(send, wire); err != nil {
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

// waitMember waits until the router takes nc's sends on subject as a
// member's: it answers a body that is not a frame with 400 (after the
// membership check) rather than 403.
func waitMember(b *testing.B, nc *nats.Conn, subject string) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := nc.Request(subject, []byte("not a frame"), 10*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		switch code := resp.Header.Get("Nats-Service-Error-Code"); code {
		case "400":
			return
		case "403", "404", "503":
			if time.Now().After(deadline) {
				b.Fatalf("the router still answers %s", code)
			}
			time.Sleep(5 * time.Millisecond) // the router's membership view follows the store
		default:
			b.Fatalf("probe answered %q: %s", code, resp.Data)
		}
	}
}

// loggedRoom is an encrypted room whose log holds frames a member sent
// (stored straight into the log: setup, not measured), and another
// member, connected, to read them.
type loggedRoom struct {
	*benchRoom
	reader *client.Conn
	// wires are the frames as stored, in log order; first is the
	// sequence of the first.
	wires [][]byte
	first uint64
}

// newLoggedRoom stores count frames of 256-byte payloads.
func newLoggedRoom(b *testing.B, n *node.Node, count int) *loggedRoom {
	b.Helper()
	room := newBenchRoom(b, n, subjects.ModeE2E)
	ids := room.addMembers(b, 2)
	sender, reader := ids[0], ids[1]
	s, err := e2e.NewSealer(e2e.SealerConfig{Identity: sender, Room: room.id, Epoch: 1, RoomKey: room.key, Grant: room.grant(b, sender.PublicKey())})
	if err != nil {
		b.Fatal(err)
	}
	type frame struct {
		id   string
		wire []byte
	}
	frames := make([]frame, count)
	for i := range frames {
		f, wire, err := s.Seal(e2e.Message{Payload: make([]byte, 256)}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		frames[i] = frame{f.ID(), wire}
	}
	// Appended a few at a time, in order per worker: the log's order is
	// the order of the appends.
	work := make(chan frame)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Go(func() {
			for f := range work {
				for attempt := 0; ; attempt++ {
					_, err := n.Store.AppendFrame(context.Background(), room.id, f.id, f.wire, 0)
					if err == nil {
						break
					}
					if attempt == 20 {
						failed.Store(err)
						break
					}
					time.Sleep(20 * time.Millisecond) // a transient JetStream error
				}
			}
		})
	}
	for _, f := range frames {
		work <- f
	}
	close(work)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	lr := &loggedRoom{benchRoom: room, reader: room.connect(b, reader)}
	// The frames in log order, read back once through the log.
	page, err := lr.reader.History(context.Background(), room.id, client.HistoryQuery{Limit: 1})
	if err != nil || len(page.Messages) != 1 {
		b.Fatalf("first frame: %+v, %v", page, err)
	}
	lr.first = page.Messages[0].Seq
	lr.wires = rawRead(b, n, room.subject, count)
	return lr
}

// rawRead reads the count messages of subject from the room log with an
// ordered consumer, as an operator with the store's credentials could:
// the floor of reading the log.
func rawRead(b *testing.B, n *node.Node, subject string, count int) [][]byte {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	js, err := jetstream.New(n.StoreConn)
	if err != nil {
		b.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, kvstore.StreamRoomLog, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	out := make([][]byte, 0, count)
	for len(out) < count {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, m.Data())
	}
	return out
}

// staticRing is the key ring of an open-only floor: one room, one epoch,
// its key.
type staticRing struct {
	owner string
	key   []byte
}

func (r staticRing) RoomState(string) (e2e.RoomState, error) {
	return e2e.RoomState{Epoch: 1, Since: time.Now(), Owner: r.owner}, nil
}
func (r staticRing) RoomKey(string, uint64) ([]byte, error) { return r.key, nil }
func (r staticRing) IsMember(string, string) bool           { return true }

// openAll verifies and decrypts wires in parallel, as a subscription's
// pipeline does (GOMAXPROCS workers, one receiver), in process: the
// floor of a catch-up.
func openAll(b *testing.B, room *benchRoom, wires [][]byte) {
	b.Helper()
	recv, err := e2e.NewReceiver(e2e.ReceiverConfig{Keys: staticRing{room.owner.PublicKey(), room.key}, MaxFrameAge: e2e.NoMaxFrameAge, EarlierEpochs: true})
	if err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	now := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(wires) {
					return
				}
				if _, err := recv.Receive(room.id, wires[i], now); err != nil {
					failed.Store(err)
				}
			}
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
}

// BenchmarkCatchUp10000 measures a subscriber that catches up with 10,000
// stored frames: Subscribe(FromSeq(first)) until all were verified,
// opened and delivered in order, in frames/s; beside it, in the same
// run, a raw JetStream ordered consumer reading the same 10,000 messages
// (the floor of reading the log) and the open-only rate (verify and
// decrypt the same frames in process, in parallel as the pipeline does,
// the floor of the client's own work). catch-up/open is the share of the
// client's capacity a catch-up reaches (the target is at least 0.7).
func BenchmarkCatchUp10000(b *testing.B) {
	const count = 10000
	ctx := context.Background()
	n := benchNode(b, func(c *node.Config) { c.Store.OpTimeout = time.Minute })
	room := newLoggedRoom(b, n, count)
	var catchUp, raw, open time.Duration
	rounds := 0
	for b.Loop() {
		var received, rejected atomic.Int64
		var lastReject atomic.Value
		done := make(chan struct{})
		start := time.Now()
		sub, err := room.reader.Subscribe(ctx, room.id, func(client.Message) {
			if received.Add(1) == count {
				close(done)
			}
		}, func(err error) { rejected.Add(1); lastReject.Store(err) }, client.FromSeq(room.first))
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("%d of %d frames caught up (%d rejected, the last with %v)", received.Load(), count, rejected.Load(), lastReject.Load())
		}
		catchUp += time.Since(start)
		if err := sub.Unsubscribe(); err != nil {
			b.Fatal(err)
		}
		if rejected.Load() > 0 {
			b.Fatalf("%d frames rejected, the last with %v", rejected.Load(), lastReject.Load())
		}

		start = time.Now()
		rawRead(b, n, room.subject, count)
		raw += time.Since(start)

		start = time.Now()
		openAll(b, room.benchRoom, room.wires)
		open += time.Since(start)
		rounds++
	}
	rate := func(d time.Duration) float64 { return float64(rounds*count) / d.Seconds() }
	b.ReportMetric(rate(catchUp), "catchup-frames/s")
	b.ReportMetric(rate(raw), "raw-js-frames/s")
	b.ReportMetric(rate(open), "open-frames/s")
	b.ReportMetric(rate(catchUp)/rate(open), "catchup/open")
	b.ReportMetric(rate(catchUp)/rate(raw), "catchup/raw")
}

// BenchmarkHistoryPage100 measures the latency of one History page of 100
// frames (a signed request, the service's membership check and batch read
// of the log, the page's verification and decryption), beside a raw
// JetStream batch direct get of the same 100 messages, in the same run.
func BenchmarkHistoryPage100(b *testing.B) {
	const count = 100
	ctx := context.Background()
	n := benchNode(b)
	room := newLoggedRoom(b, n, count)
	var page, raw time.Duration
	rounds := 0
	for b.Loop() {
		start := time.Now()
		p, err := room.reader.History(ctx, room.id, client.HistoryQuery{From: room.first, Limit: count})
		if err != nil {
			b.Fatal(err)
		}
		page += time.Since(start)
		if len(p.Messages) != count || len(p.Rejected) > 0 {
			b.Fatalf("page of %d messages, %d rejected", len(p.Messages), len(p.Rejected))
		}
		start = time.Now()
		if got := directGetBatch(b, n.StoreConn, room.subject, room.first, count); got != count {
			b.Fatalf("direct get of %d messages, want %d", got, count)
		}
		raw += time.Since(start)
		rounds++
	}
	pageMs := float64(page.Microseconds()) / 1e3 / float64(rounds)
	rawMs := float64(raw.Microseconds()) / 1e3 / float64(rounds)
	b.ReportMetric(pageMs, "ms/page")
	b.ReportMetric(rawMs, "ms/raw-batch-get")
	b.ReportMetric(pageMs/rawMs, "page/raw")
}

// directGetBatch reads up to count messages of subject from seq on with one
// JetStream batch direct get (nats-server ≥ 2.11; nats.go does not wrap
// it) and returns how many came before the end-of-batch status.
func directGetBatch(b *testing.B, nc *nats.Conn, subject string, seq uint64, count int) int {
	b.Helper()
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, count+2)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	req := fmt.Sprintf(`{"seq":%d,"next_by_subj":%q,"batch":%d}`, seq, subject, count)
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+kvstore.StreamRoomLog, inbox, []byte(req)); err != nil {
		b.Fatal(err)
	}
	got := 0
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-ch:
			if len(m.Data) == 0 && m.Header.Get("Status") != "" {
				return got // the end of the batch
			}
			got++
		case <-timeout:
			b.Fatalf("direct get: %d messages, no end of batch", got)
		}
	}
}
