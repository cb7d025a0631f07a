package authcallout_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// indexDirectGet is the direct get subject of the rooms-by-member index,
// which any replica answers.
const indexDirectGet = "$JS.API.DIRECT.GET.KV_" + kvstore.BucketRoomsByMember

// directAnswer is a direct get's answer, message by message, as a replica
// sent it.
type directAnswer []*nats.Msg

// askIndex sends the direct get the callout's plain read sends for pub's
// rooms and keeps the answer.
func askIndex(t *testing.T, nc *nats.Conn, pub string) directAnswer {
	t.Helper()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(indexDirectGet, inbox, []byte(`{"multi_last":["$KV.`+kvstore.BucketRoomsByMember+`.`+pub+`.*"]}`)); err != nil {
		t.Fatal(err)
	}
	var answer directAnswer
	for {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("direct get: %v", err)
		}
		answer = append(answer, msg)
		if len(msg.Data) == 0 && msg.Header.Get("Status") != "" {
			return answer
		}
	}
}

// TestCalloutReadsRoomsFromLeader: a member removed from a room connects
// while the replica that answers direct gets has not seen the removal
// (played deterministically: the index stream's own direct gets are
// turned off, and a responder answers with what it held before the
// removal). The callout does not grant the room it left: it fails closed
// while the replica stays behind, and admits with the right rooms once it
// has caught up. A callout reading the rooms from any replica grants it.
func TestCalloutReadsRoomsFromLeader(t *testing.T) {
	b := startKickBus(t)
	ctx := context.Background()
	owner := addUser(t, b.store, "owner")
	member := addUser(t, b.store, "member")
	left := newCleartextRoom(t, b.store, owner)
	stays := newCleartextRoom(t, b.store, owner)
	for _, room := range []string{left, stays} {
		if _, err := b.store.AddMember(ctx, room, member.PublicKey(), subjects.RoleMember, 0, kvstore.SealedKey{}); err != nil {
			t.Fatal(err)
		}
	}
	nc := b.dial(b.tester, "stale replica")
	stale := askIndex(t, nc, member.PublicKey())
	if err := b.store.RemoveMember(ctx, left, member.PublicKey()); err != nil {
		t.Fatal(err)
	}
	fresh := askIndex(t, nc, member.PublicKey())

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "KV_"+kvstore.BucketRoomsByMember)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var asked, staleAnswers atomic.Int64
	staleAnswers.Store(1 << 30)
	sub, err := nc.Subscribe(indexDirectGet, func(m *nats.Msg) {
		answer := fresh
		if asked.Add(1) <= staleAnswers.Load() {
			answer = stale
		}
		for _, msg := range answer {
			if err := nc.PublishMsg(&nats.Msg{Subject: m.Reply, Header: msg.Header, Data: msg.Data}); err != nil {
				t.Error(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// The replica stays behind: denied, within the callout's deadline.
	start := time.Now()
	if c, err := nats.Connect(b.url, nodetest.ConnectOptions(member)...); err == nil {
		c.Close()
		t.Fatal("admitted on rooms read from a replica behind the leader")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect = %v, want an authorization violation", err)
	}
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Fatalf("denied after %s", took)
	}
	if asked.Load() < 2 {
		t.Fatalf("the replica was asked %d times, want it asked again", asked.Load())
	}

	// The replica catches up after two answers: admitted with the room it
	// stays in, not the one it left.
	asked.Store(0)
	staleAnswers.Store(2)
	c, err := nats.Connect(b.url, append(nodetest.ConnectOptions(member), quietPermissionErrors())...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for room, want := range map[string]bool{left: false, stays: true} {
		subject, err := subjects.Room(room)
		if err != nil {
			t.Fatal(err)
		}
		if got := usesRoom(c, subject); got != want {
			t.Errorf("member uses room %s: %v, want %v (left %s)", room, got, want, left)
		}
	}
}
