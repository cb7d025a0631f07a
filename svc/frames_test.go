package svc_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// Frames go through the node's routing service (package router), not
// through the services: these helpers send them as a client does, so that
// the tests see what the control plane's changes do to them.

// frame seals a frame of u's in room: in an encrypted room under a
// stand-in room key and grant (the router reads neither; receivers would).
func (u *user) frame(t testing.TB, room subjects.RoomInfo, payload string) []byte {
	t.Helper()
	seed, err := u.kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e2e.SealerConfig{Identity: id, Room: room.RoomID, Cleartext: room.Mode == subjects.ModeCleartext}
	if !cfg.Cleartext {
		cfg.Epoch, cfg.RoomKey, cfg.Grant = room.Epoch, e2e.NewRoomKey(), grant(t)
	}
	s, err := e2e.NewSealer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, wire, err := s.Seal(e2e.Message{Payload: []byte(payload)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return wire
}

// sendFrame sends a new frame of u's to room through the router, as an
// acknowledged send on u's own connection, and returns the reply (a
// subjects.SendAck or an error).
func (e *env) sendFrame(t testing.TB, u *user, room subjects.RoomInfo, payload string) *nats.Msg {
	t.Helper()
	return e.sendWire(t, u, room, u.frame(t, room, payload))
}

// sendWire sends wire to room as u through the router, acknowledged, and
// returns the reply.
func (e *env) sendWire(t testing.TB, u *user, room subjects.RoomInfo, wire []byte) *nats.Msg {
	t.Helper()
	subject, err := subjects.Send(room.RoomID, u.pub)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	r, err := u.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Data: wire})
	if err != nil {
		t.Fatalf("%s: send to room %s: %v", u.name, room.RoomID, err)
	}
	return r
}

// deliveries subscribes, on u's connection, to what the router delivers
// to u in room.
func (e *env) deliveries(t testing.TB, u *user, room subjects.RoomInfo) chan *nats.Msg {
	t.Helper()
	subject, err := subjects.Deliver(u.pub, room.RoomID)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *nats.Msg, 64)
	sub, err := u.nc.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := u.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// nextDelivery returns the next delivery of ch.
func nextDelivery(t testing.TB, ch chan *nats.Msg) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(requestTimeout):
		t.Fatalf("no delivery within %s", requestTimeout)
		return nil
	}
}
