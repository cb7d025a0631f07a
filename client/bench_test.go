package client_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client"
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
// to end: one members request (with every member's encryption key), a
// fresh room key sealed to each member with HPKE (ML-KEM-768 + X25519), and
// one rekey request whose keys the service stores.
func BenchmarkRekey1000(b *testing.B) {
	ctx := context.Background()
	n := nodetest.Run(b, func(c *node.Config) { c.Store.OpTimeout = time.Minute })
	owner := benchPeer(b, n, "owner")
	room, err := owner.CreateRoom(ctx, "big", subjects.ModeE2E)
	if err != nil {
		b.Fatal(err)
	}
	addMembers(b, n, owner, room.RoomID, 999)
	for b.Loop() {
		if _, err := owner.Rekey(ctx, room.RoomID); err != nil {
			b.Fatal(err)
		}
	}
}

// addMembers registers count users with encryption keys and adds them to
// the room straight through the store (setup, not measured).
func addMembers(b *testing.B, n *node.Node, owner *client.Conn, roomID string, count int) {
	b.Helper()
	ctx := context.Background()
	// One encryption key serves every synthetic member: sealing cost does
	// not depend on whose key it is.
	enc, _, err := client.LoadOrCreateEncryptionKey(filepath.Join(b.TempDir(), "members.enc"))
	if err != nil {
		b.Fatal(err)
	}
	room, err := n.Store.GetRoom(ctx, roomID)
	if err != nil {
		b.Fatal(err)
	}
	for i := range count {
		id, err := identity.Generate()
		if err != nil {
			b.Fatal(err)
		}
		sig, err := subjects.SignEncKeyBinding(id.KeyPair(), enc.PublicKey())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := n.Store.AddUser(ctx, kvstore.User{Pub: id.PublicKey(), Name: fmt.Sprint("m", i), EncKey: enc.PublicKey(), EncKeySig: sig}); err != nil {
			b.Fatal(err)
		}
		if _, err := n.Store.AddMember(ctx, roomID, id.PublicKey(), subjects.RoleMember, room.Epoch, []byte("sealed")); err != nil {
			b.Fatal(err)
		}
	}
	_ = owner
}
