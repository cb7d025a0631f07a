package svc_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

// Floods from made-up signers (issue 14 §2): requests signed by keys that
// nobody registered. The callout admits only registered keys, so such a
// flood travels over a registered attacker's connections; its answers go
// to the made-up keys' inboxes, which the attacker cannot read, so a real
// attacker sends without waiting. Here the answers are read through the
// store's connection (which may subscribe to every inbox, see
// user.listen) so that each flood worker sends its next request as soon
// as its last one is answered: the flood runs as fast as the services
// answer it, never faster than they can (which would only grow a queue).

// floodKind is what a flood sends. Its requests are signed before it
// starts, as an attacker would to spend no time on it (a signature holds
// for the services' clock skew, and nobody claims the nonce of a key
// that is not registered), and sent by turns.
type floodKind int

const (
	// floodMadeUpKeys: every request validly signed, each by another
	// made-up key.
	floodMadeUpKeys floodKind = iota
	// floodOneKey: every request validly signed by one made-up key, each
	// with its own nonce.
	floodOneKey
	// floodGarbage: requests that claim made-up keys, each another, with
	// signatures that are random bytes.
	floodGarbage
)

func (k floodKind) String() string {
	return [...]string{"made-up-keys", "one-key", "garbage-signatures"}[k]
}

// floodSubjects are the endpoints a flood and the registered users share:
// simple reads, whose handlers no other work in progress changes.
var floodSubjects = []string{subjects.UsersGet, subjects.RoomsMine}

// flood is a running flood; stop ends it and waits for its goroutines.
type flood struct {
	msgs    []*nats.Msg
	tag     string // the flood's token in its reply subjects
	next    atomic.Uint64
	sub     *nats.Subscription
	replies []chan *nats.Msg // by worker
	quit    chan struct{}
	wg      sync.WaitGroup

	sent     atomic.Int64
	answered atomic.Int64
	// codes counts the answers by error code ("" for success).
	mu    sync.Mutex
	codes map[string]int64
}

// startFlood starts conns × perConn workers, each keeping one of msgs
// (by turns) in flight over its connection. Its answers are read through
// listen.
func startFlood(t testing.TB, msgs []*nats.Msg, conns []*nats.Conn, perConn int, listen *nats.Conn) *flood {
	t.Helper()
	f := &flood{
		msgs:  msgs,
		tag:   "flood" + strings.ReplaceAll(strings.TrimPrefix(nats.NewInbox(), "_INBOX."), ".", ""),
		quit:  make(chan struct{}),
		codes: map[string]int64{},
	}
	workers := len(conns) * perConn
	f.replies = make([]chan *nats.Msg, workers)
	for i := range f.replies {
		f.replies[i] = make(chan *nats.Msg, 4)
	}
	sub, err := listen.Subscribe("_INBOX.*."+f.tag+".>", func(m *nats.Msg) {
		// _INBOX.<key>.<tag>.<worker>.<seq>
		tokens := strings.Split(m.Subject, ".")
		if len(tokens) != 5 {
			return
		}
		w, err := strconv.Atoi(tokens[3])
		if err != nil || w < 0 || w >= len(f.replies) {
			return
		}
		select {
		case f.replies[w] <- m:
		default:
		}
	})
	if err != nil {
		t.Fatalf("subscribe to the flood's answers: %v", err)
	}
	// The flood reads its answers as fast as they come: no slow consumer.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		t.Fatal(err)
	}
	if err := listen.Flush(); err != nil {
		t.Fatal(err)
	}
	f.sub = sub
	for w := range workers {
		nc := conns[w%len(conns)]
		f.wg.Go(func() { f.work(w, nc) })
	}
	return f
}

// work keeps one request in flight until quit. A request left unanswered
// for a while (lost, or answered after a newer one) is simply followed by
// the next.
func (f *flood) work(w int, nc *nats.Conn) {
	for seq := 0; ; seq++ {
		select {
		case <-f.quit:
			return
		default:
		}
		if err := nc.PublishMsg(f.msg(w, seq)); err != nil {
			select {
			case <-f.quit:
			case <-time.After(10 * time.Millisecond): // the connection is reconnecting
			}
			continue
		}
		f.sent.Add(1)
		want := "." + strconv.Itoa(seq)
		timeout := time.NewTimer(requestTimeout)
	wait:
		for {
			select {
			case r := <-f.replies[w]:
				if !strings.HasSuffix(r.Subject, want) {
					continue // an answer to an older request
				}
				f.answered.Add(1)
				code := r.Header.Get(micro.ErrorCodeHeader)
				f.mu.Lock()
				f.codes[code]++
				f.mu.Unlock()
				break wait
			case <-timeout.C:
				break wait
			case <-f.quit:
				timeout.Stop()
				return
			}
		}
		timeout.Stop()
	}
}

// msg is worker w's request number seq: the next of f.msgs, answered in
// its signer's inbox.
func (f *flood) msg(w, seq int) *nats.Msg {
	m := f.msgs[int(f.next.Add(1)%uint64(len(f.msgs)))]
	owner := m.Header.Get(subjects.HeaderPub)
	return &nats.Msg{
		Subject: m.Subject,
		Reply:   "_INBOX." + owner + "." + f.tag + "." + strconv.Itoa(w) + "." + strconv.Itoa(seq),
		Header:  m.Header,
		Data:    m.Data,
	}
}

// floodMessages signs n requests of kind, by keys by turns (by the first
// key only for floodOneKey), to the floodSubjects by turns.
func floodMessages(t testing.TB, kind floodKind, keys []*identity.Identity, n int) []*nats.Msg {
	t.Helper()
	msgs := make([]*nats.Msg, n)
	now := time.Now()
	for i := range msgs {
		id := keys[i%len(keys)]
		if kind == floodOneKey {
			id = keys[0]
		}
		subject := floodSubjects[i%len(floodSubjects)]
		var body []byte
		if subject == subjects.UsersGet {
			body, _ = json.Marshal(subjects.GetUserRequest{Pub: id.PublicKey()})
		}
		h, err := subjects.SignRequest(idSigner{id}, subject, body, now)
		if err != nil {
			t.Fatal(err)
		}
		if kind == floodGarbage {
			sig := make([]byte, 64)
			_, _ = rand.Read(sig)
			h.Set(subjects.HeaderSig, base64.RawURLEncoding.EncodeToString(sig))
		}
		msgs[i] = &nats.Msg{Subject: subject, Header: h, Data: body}
	}
	return msgs
}

// stop ends the flood and waits for its workers.
func (f *flood) stop() {
	select {
	case <-f.quit:
		return
	default:
	}
	close(f.quit)
	f.wg.Wait()
	_ = f.sub.Unsubscribe()
}

// answers returns how many answers the flood had, by error code.
func (f *flood) answers() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int64, len(f.codes))
	for k, v := range f.codes {
		out[k] = v
	}
	return out
}

// waitAnswered waits until the flood has had n answers since it started.
func (f *flood) waitAnswered(t testing.TB, n int64) {
	t.Helper()
	deadline := time.Now().Add(requestTimeout)
	for f.answered.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("flood not under way after %s: %d of %d answers", requestTimeout, f.answered.Load(), n)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter the flood's own answers move
	}
}

// madeUpKeys returns n identities nobody registered.
func madeUpKeys(t testing.TB, n int) []*identity.Identity {
	t.Helper()
	keys := make([]*identity.Identity, n)
	for i := range keys {
		id, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = id
	}
	return keys
}

// attackerConns registers an attacker and returns n connections of its.
func (e *env) attackerConns(t testing.TB, n int) []*nats.Conn {
	t.Helper()
	attacker := e.register(t, "attacker")
	conns := make([]*nats.Conn, n)
	for i := range conns {
		u := *attacker
		e.connect(t, &u)
		conns[i] = u.nc
	}
	return conns
}

// TestRegisteredServedDuringFlood: during a flood from made-up signers
// (each kind: many keys, one key, garbage signatures), registered users
// are served, and so, at its first request, is a user the instance has
// never seen: one an administrator adds during the flood, and one added
// behind this instance's back (in the store, as through another
// instance). The flood is refused with 401 (or 429) and writes nothing,
// not even a nonce.
//
// The rate limit is low (10 a second, in bursts of 20, per identity), so
// that a flood on a loaded machine outruns what made-up signers were
// allowed before (the newcomers' bucket they shared with such users:
// ten identities' worth).
func TestRegisteredServedDuringFlood(t *testing.T) {
	const rate, burst = 10, 20
	e := newEnv(t, withConfig(func(c *svc.Config) { c.RateLimit, c.RateBurst = rate, burst }))
	users := e.registeredClients(t, 2)
	conns := e.attackerConns(t, 2)
	keys := madeUpKeys(t, 2048)
	for _, kind := range []floodKind{floodMadeUpKeys, floodOneKey, floodGarbage} {
		t.Run(kind.String(), func(t *testing.T) {
			msgs := floodMessages(t, kind, keys, len(keys))
			before := e.streams(t)
			f := startFlood(t, msgs, conns, 8, e.node.StoreConn)
			defer f.stop()
			// Three times the burst of ten identities: any bucket that
			// made-up signers share has run dry.
			f.waitAnswered(t, 3*10*burst)
			if after := e.streams(t); !equalStreams(before, after) {
				t.Errorf("the flood wrote state: %v → %v", before, after)
			}

			for i := range burst / 2 {
				for _, u := range users {
					mustServe(t, u, i)
				}
			}
			added := e.newIdentity(t, "added-"+kind.String())
			call[subjects.UserInfo](t, e.admin, subjects.UsersAdd, subjects.AddUserRequest{Pub: added.pub})
			e.connect(t, added)
			mustServe(t, e.asClient(t, added), 0)
			behind := e.newIdentity(t, "behind-"+kind.String())
			ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
			defer cancel()
			if _, err := e.store.AddUser(ctx, kvstore.User{Pub: behind.pub}); err != nil {
				t.Fatal(err)
			}
			e.connect(t, behind)
			mustServe(t, e.asClient(t, behind), 1)

			f.stop()
			answers := f.answers()
			for code, n := range answers {
				if code != "401" && code != "429" {
					t.Errorf("%d flood requests answered %q, want 401 or 429", n, code)
				}
			}
			if answers["401"] == 0 {
				t.Errorf("no flood request refused as unregistered: %v", answers)
			}
			t.Logf("flood answers by code: %v", answers)
		})
	}
}

// mustServe makes u's request number i, which must succeed. A 503 is the
// store's passing unavailability (a loaded machine), not an answer: the
// request is made again, a few times.
func mustServe(t *testing.T, u registeredClient, i int) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		r, err := u.request(i)
		if err != nil {
			t.Fatalf("%s: request %d: %v", u.pub, i, err)
		}
		code := r.Header.Get(micro.ErrorCodeHeader)
		switch {
		case code == "":
			return
		case code == itoa(subjects.CodeUnavailable) && attempt < 3:
			continue
		}
		t.Fatalf("%s: request %d refused: %s %s", u.pub, i, code, r.Header.Get(micro.ErrorHeader))
	}
}

// asClient returns u, connected, as a registeredClient.
func (e *env) asClient(t testing.TB, u *user) registeredClient {
	t.Helper()
	seed, err := u.kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.FromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return registeredClient{pub: u.pub, nc: u.nc, signer: idSigner{id}}
}

// TestNewUserNotLockedOut: a key refused as unregistered is refused from
// memory for a while, but a user an administrator adds through this
// instance is served at once, and one added elsewhere within a second.
func TestNewUserNotLockedOut(t *testing.T) {
	e := newEnv(t)
	before := e.streams(t)
	s := e.stranger(t)
	for range 3 {
		wantError(t, s.request(t, subjects.RoomsMine, nil), subjects.CodeUnauthenticated, s.pub+" is not a registered user")
	}
	if after := e.streams(t); !equalStreams(before, after) {
		t.Errorf("an unregistered signer's requests wrote state: %v → %v", before, after)
	}
	call[subjects.UserInfo](t, e.admin, subjects.UsersAdd, subjects.AddUserRequest{Pub: s.pub})
	decode[subjects.MineResponse](t, s.request(t, subjects.RoomsMine, nil))

	// Added behind this instance's back, as through another one: refused
	// until what this one remembers expires (less than a second).
	other := e.stranger(t)
	wantError(t, other.request(t, subjects.RoomsMine, nil), subjects.CodeUnauthenticated, "not a registered user")
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if _, err := e.store.AddUser(ctx, kvstore.User{Pub: other.pub}); err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	for {
		r := other.request(t, subjects.RoomsMine, nil)
		if r.Header.Get(micro.ErrorCodeHeader) == "" {
			break
		}
		wantError(t, r, subjects.CodeUnauthenticated, "not a registered user")
		if time.Since(added) > 5*time.Second {
			t.Fatalf("a user added elsewhere still refused %s later", time.Since(added))
		}
	}
	t.Logf("a user added elsewhere was served %s after it was added", time.Since(added).Round(time.Millisecond))
}
