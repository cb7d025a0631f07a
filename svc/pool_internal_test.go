package svc

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// TestWorkerPool drives the pool with an endpoint that blocks until
// released: a saturated pool refuses with 503 once the request's deadline
// passes, and stop waits for the request in progress, which is answered.
func TestWorkerPool(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := natstest.JetStream(t, srv.ClientURL())
	store, err := kvstore.Open(context.Background(), js, kvstore.Config{Replicas: 1, Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: store, Conn: nc, AuthMode: AuthOff, Workers: 1, RequestTimeout: 300 * time.Millisecond}.withDefaults()
	if err := cfg.valid(); err != nil {
		t.Fatal(err)
	}

	started, release := make(chan struct{}, 1), make(chan struct{})
	block := named("block", op(func(ctx context.Context, _ caller, _ *struct{}) (struct{}, error) {
		started <- struct{}{}
		<-release
		return struct{}{}, nil
	}))
	s, err := startService(context.Background(), cfg, nil, serviceSpec{name: "pool-test", group: "test", endpoints: []endpoint{block}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.stop() })
	if err := flush(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}

	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	// Replies go only to the caller's own inbox.
	client := natstest.Connect(t, srv.ClientURL(), nats.CustomInboxPrefix("_INBOX."+pub))
	msg := func() *nats.Msg {
		m := nats.NewMsg("test.block")
		m.Header.Set(subjects.HeaderPub, pub)
		return m
	}
	// The first request takes the only worker...
	inbox := client.NewRespInbox()
	first, err := client.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	m := msg()
	m.Reply = inbox
	if err := client.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	<-started

	// ...so the second waits for its deadline and is refused.
	r, err := client.RequestMsg(msg(), 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := r.Header.Get(micro.ErrorCodeHeader); code != strconv.Itoa(subjects.CodeUnavailable) {
		t.Fatalf("saturated pool: code %q %q, want 503", code, r.Header.Get(micro.ErrorHeader))
	}
	if got := s.stats["block"].snapshot(); got.Busy != 1 || got.Errors != 1 {
		t.Errorf("stats %+v, want one busy refusal", got)
	}

	// stop waits for the request in progress.
	stopped := make(chan error)
	go func() { stopped <- s.stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("stop returned (%v) while a request was in progress", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}
	reply, err := first.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("the request in progress was not answered: %v", err)
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" || string(reply.Data) != "{}" {
		t.Errorf("reply %q %s", code, reply.Data)
	}
	// Nobody answers any more.
	if _, err := client.RequestMsg(msg(), 5*time.Second); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("request after stop: %v, want no responders", err)
	}
}

// TestSaturatingBurst: with its only worker stuck (in a handler that does
// not even honor its deadline), a burst many times the queue is answered
// in full and in time: 503 at once for what does not fit in the queue,
// 503 at their deadline for the queued requests. Nothing hangs.
func TestSaturatingBurst(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := natstest.JetStream(t, srv.ClientURL())
	store, err := kvstore.Open(context.Background(), js, kvstore.Config{Replicas: 1, Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 500 * time.Millisecond
	cfg := Config{Store: store, Conn: nc, AuthMode: AuthOff, Workers: 1, QueueLength: 4, RequestTimeout: timeout}.withDefaults()
	if err := cfg.valid(); err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}, 1), make(chan struct{})
	block := named("block", op(func(context.Context, caller, *struct{}) (struct{}, error) {
		started <- struct{}{}
		<-release
		return struct{}{}, nil
	}))
	s, err := startService(context.Background(), cfg, nil, serviceSpec{name: "burst-test", group: "test", endpoints: []endpoint{block}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.stop() })
	if err := flush(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	client := natstest.Connect(t, srv.ClientURL(), nats.CustomInboxPrefix("_INBOX."+pub))
	send := func(inbox string) {
		t.Helper()
		m := nats.NewMsg("test.block")
		m.Reply = inbox
		m.Header.Set(subjects.HeaderPub, pub)
		if err := client.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	first, err := client.SubscribeSync(client.NewRespInbox())
	if err != nil {
		t.Fatal(err)
	}
	send(first.Subject)
	<-started

	const burst = 40
	replies := make(chan *nats.Msg, burst)
	inbox := client.NewRespInbox()
	sub, err := client.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	sent := time.Now()
	for i := range burst {
		send(inbox + "." + strconv.Itoa(i))
	}
	bound := timeout + time.Second // the deadline, and slack for a busy machine
	for i := range burst {
		select {
		case r := <-replies:
			if code := r.Header.Get(micro.ErrorCodeHeader); code != strconv.Itoa(subjects.CodeUnavailable) || r.Header.Get(micro.ErrorHeader) != "the service is busy; retry later" {
				t.Fatalf("reply %d: %q %q, want 503 busy", i, code, r.Header.Get(micro.ErrorHeader))
			}
		case <-time.After(time.Until(sent.Add(bound))):
			t.Fatalf("%d of %d requests of the burst unanswered %s after it was sent", burst-i, burst, bound)
		}
	}
	if got := s.stats["block"].snapshot(); got.Busy != burst {
		t.Errorf("stats %+v, want %d busy refusals", got, burst)
	}
	close(release)
	if _, err := first.NextMsg(30 * time.Second); err != nil {
		t.Fatalf("the request in progress was not answered: %v", err)
	}
}

// named gives a test endpoint of group "test" its table entry.
func named(name string, ep endpoint) endpoint {
	ep.spec = subjects.Endpoint{Name: name, Subject: "test." + name, Summary: "blocks until released", Access: "tests"}
	return ep
}
