package svc_test

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/subjects"
)

// Peers and kicks. The auth callout's access watcher disconnects a user's
// connections when it is revoked (or its admin flag changes), and only
// then: membership changes touch no permissions and kick no one. A reply
// the services send while the connection is down is lost. The helpers here
// keep the tests deterministic without sleeping:
//
//   - a request whose success kicks someone (kickedBy) records that the
//     kick is due on that user's connections, and the next request on such
//     a connection first waits for the kick and the reconnect (settle), so
//     that no write is in flight when the kick lands;
//   - a request that sees its connection come back without its reply
//     (a kick nobody expected) is signed again and sent once more.
//
// Every environment checks at its end that no connection was disconnected
// but by a revocation (env.noUnexpectedKicks).

const (
	// kickWait bounds the wait for a kick that is due. A kick normally
	// lands within a few hundred milliseconds. A disconnection for any
	// other reason after the change counts as the kick (the reconnect
	// brings the new permissions), so a kick that does not come within the
	// bound is a failure: the access watcher missed a change.
	kickWait = 5 * time.Second
	// lostReplyGrace is how long a request in flight when its connection
	// came back may still get its reply (the request may have waited in
	// the reconnect buffer) before it counts as lost.
	lostReplyGrace = 2 * time.Second
)

// errReplyLost: the connection came back and the reply did not follow.
var errReplyLost = errors.New("connection kicked during the request, reply lost")

// peer is one user connection with its disconnections and reconnections.
type peer struct {
	pub string
	nc  *nats.Conn

	mu         sync.Mutex
	downs, ups int           // disconnections and reconnections so far
	changed    chan struct{} // closed and replaced at every event
	// kickAfter, when not negative, is a kick due: the connection is to be
	// disconnected once more than kickAfter times.
	kickAfter int
}

func newPeer(pub string) *peer {
	return &peer{pub: pub, changed: make(chan struct{}), kickAfter: -1}
}

// event records a disconnection (down) or a reconnection.
func (p *peer) event(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if down {
		p.downs++
	} else {
		p.ups++
	}
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *peer) state() (downs, ups int, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.downs, p.ups, p.changed
}

// kickDue records that a kick is due after downs disconnections.
func (p *peer) kickDue(downs int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.kickAfter = max(p.kickAfter, downs)
}

// settle waits until a kick due has landed and the connection is back,
// and fails the test when that does not happen within kickWait.
func (p *peer) settle(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	after := p.kickAfter
	p.kickAfter = -1
	p.mu.Unlock()
	timeout := time.NewTimer(kickWait)
	defer timeout.Stop()
	for {
		downs, ups, changed := p.state()
		if downs > after && ups >= downs {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			if downs > after {
				t.Fatalf("%s: kicked, but not reconnected within %s (%d disconnections, %d reconnections)", p.pub, kickWait, downs, ups)
			}
			t.Fatalf("%s: the kick due after disconnection %d did not come within %s (%d disconnections, %d reconnections)", p.pub, after, kickWait, downs, ups)
		}
	}
}

// request sends m and waits for its reply. lost reports that the
// connection came back during the request and the reply did not follow
// within lostReplyGrace.
//
// The reply goes to the inbox of the sender's connection, or, when owner is
// set, to owner's inbox, read through listen (see user.listen).
func (p *peer) request(m *nats.Msg, owner string, listen *nats.Conn) (reply *nats.Msg, lost bool, err error) {
	inbox := p.nc.NewRespInbox()
	if owner != "" {
		inbox = "_INBOX." + owner + strings.TrimPrefix(nats.NewInbox(), "_INBOX")
	} else {
		listen = p.nc
	}
	replies := make(chan *nats.Msg, 1)
	sub, err := listen.ChanSubscribe(inbox, replies)
	if err != nil {
		return nil, false, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := listen.Flush(); err != nil {
		return nil, false, err
	}
	_, ups, changed := p.state()
	if err := p.nc.PublishMsg(&nats.Msg{Subject: m.Subject, Reply: inbox, Header: m.Header, Data: m.Data}); err != nil {
		return nil, false, err
	}
	deadline := time.NewTimer(requestTimeout)
	defer deadline.Stop()
	var grace <-chan time.Time
	for {
		select {
		case r := <-replies:
			// The server's "no responders" status, as nats.go's Request
			// reports it.
			if len(r.Data) == 0 && r.Header.Get("Status") == "503" {
				return nil, false, nats.ErrNoResponders
			}
			return r, false, nil
		case <-changed:
			var now int
			_, now, changed = p.state()
			if now > ups && grace == nil {
				grace = time.After(lostReplyGrace)
			}
		case <-grace:
			return nil, true, errReplyLost
		case <-deadline.C:
			return nil, false, nats.ErrTimeout
		}
	}
}

// peer returns the tracker of a user connection.
func (e *env) peer(t testing.TB, nc *nats.Conn) *peer {
	t.Helper()
	e.mu.Lock()
	p, ok := e.peers[nc]
	e.mu.Unlock()
	if !ok {
		t.Fatalf("connection %s is not a user connection", nc.Opts.Name)
	}
	return p
}

// downs returns the disconnection counts of pub's connections.
func (e *env) downs(pub string) map[*peer]int {
	if pub == "" {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[*peer]int{}
	for _, p := range e.peers {
		if p.pub == pub {
			downs, ups, _ := p.state()
			// A connection that is down now comes back after the request
			// is sent: if it comes back after the change is stored, it
			// already has the new permissions and is rightly not kicked
			// (the watcher kicks only connections older than the change);
			// if before, the watcher kicks it and the next disconnection
			// shows it. So the reconnection itself counts.
			if downs > ups {
				downs--
			}
			out[p] = downs
		}
	}
	return out
}

// kickedBy returns whose connections the access watcher disconnects when
// request m succeeds: the revoked user's ("" for no one). Creating,
// joining, leaving or losing a room kicks no one.
func (e *env) kickedBy(m *nats.Msg) string {
	if m.Subject != subjects.UsersRevoke {
		return ""
	}
	var req struct {
		Pub string `json:"pub"`
	}
	if json.Unmarshal(m.Data, &req) != nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.revoked[req.Pub] = true
	return req.Pub
}

// noUnexpectedKicks fails the test if a connection of a user that was not
// revoked was disconnected: membership changes must not kick anyone.
func (e *env) noUnexpectedKicks(t testing.TB) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range e.peers {
		if downs, _, _ := p.state(); downs > 0 && !e.revoked[p.pub] && !e.kickable[p.pub] {
			t.Errorf("%s: disconnected %d times, though it was not revoked", p.pub, downs)
		}
	}
}

// roundTrip sends m on u's connection, once any kick due on it has landed,
// and returns the reply. When again is set and the reply is lost to a
// kick, again's message is sent once more.
func (u *user) roundTrip(t testing.TB, m *nats.Msg, again func() *nats.Msg) *nats.Msg {
	t.Helper()
	p := u.env.peer(t, u.nc)
	p.settle(t)
	kicked := u.env.kickedBy(m)
	before := u.env.downs(kicked)
	var owner string
	if u.listen != nil {
		owner = u.pub
	}
	r, lost, err := p.request(m, owner, u.listen)
	if lost && again != nil {
		t.Logf("%s: %s: %v; signing and sending it again", u.name, m.Subject, err)
		r, _, err = p.request(again(), owner, u.listen)
	}
	if err != nil {
		t.Fatalf("%s: request %s: %v", u.name, m.Subject, err)
	}
	if r.Header.Get(micro.ErrorCodeHeader) == "" {
		for kp, downs := range before {
			kp.kickDue(downs)
		}
	}
	return r
}

// TestPeersGoThroughTheCallout: the environment is the secured bus. A key
// that is not registered cannot connect; a revoked user's connection is
// closed and the user cannot connect again.
func TestPeersGoThroughTheCallout(t *testing.T) {
	e := newEnv(t)
	connect := func(u *user) error {
		nc, err := nats.Connect(e.node.ClientURL(), nats.Nkey(u.pub, u.kp.Sign), nats.MaxReconnects(0))
		if err == nil {
			nc.Close()
		}
		return err
	}
	if err := connect(e.newIdentity(t, "stranger")); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("unregistered key: connect = %v, want an authorization violation", err)
	}

	own := e.peer(t, e.bob.nc)
	e.revoke(t, e.bob, e.alice)
	deadline := time.After(requestTimeout)
	for downs, _, changed := own.state(); downs == 0; downs, _, changed = own.state() {
		select {
		case <-changed:
		case <-deadline:
			t.Fatal("the revoked user's connection is still open")
		}
	}
	if err := connect(e.bob); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("revoked user: connect = %v, want an authorization violation", err)
	}
}
