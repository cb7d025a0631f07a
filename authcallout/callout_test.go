package authcallout_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
)

// refreshBound is how fast revocations and membership changes must reach
// live connections.
const refreshBound = time.Second

// TestCallout runs the same suite with and without xkey encryption of the
// callout exchange.
func TestCallout(t *testing.T) {
	for _, env := range []struct {
		name string
		opts []nodetest.Option
	}{
		{"plain", nil},
		{"xkey", []nodetest.Option{nodetest.WithXKey()}},
	} {
		t.Run(env.name, func(t *testing.T) {
			t.Run("RegisteredPeerGolden", func(t *testing.T) { testGolden(t, env.opts) })
			t.Run("Refused", func(t *testing.T) { testRefused(t, env.opts) })
			t.Run("RevokedLive", func(t *testing.T) { testRevokedLive(t, env.opts) })
			t.Run("Permissions", func(t *testing.T) { testPermissions(t, env.opts) })
			t.Run("MembershipRefresh", func(t *testing.T) { testMembershipRefresh(t, env.opts) })
			t.Run("StoreUnavailable", func(t *testing.T) { testStoreUnavailable(t, env.opts) })
			t.Run("StoreSlow", func(t *testing.T) { testStoreSlow(t, env.opts) })
		})
	}
}

// peer is a connection with its asynchronous errors and disconnects.
type peer struct {
	nc          *nats.Conn
	errs        chan error
	disconnects chan time.Time
	reconnects  chan time.Time
}

func connectPeer(t *testing.T, n *node.Node, id *identity.Identity, extra ...nats.Option) (*peer, error) {
	t.Helper()
	p := &peer{errs: make(chan error, 64), disconnects: make(chan time.Time, 16), reconnects: make(chan time.Time, 16)}
	opts := append(nodetest.ConnectOptions(id),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case p.errs <- err:
			default:
			}
		}),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			select {
			case p.disconnects <- time.Now():
			default:
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case p.reconnects <- time.Now():
			default:
			}
		}),
		nats.ReconnectWait(50*time.Millisecond),
		nats.MaxReconnects(-1),
		nats.IgnoreAuthErrorAbort(),
	)
	opts = append(opts, extra...)
	nc, err := nats.Connect(n.ClientURL(), opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	p.nc = nc
	return p, nil
}

func mustConnect(t *testing.T, n *node.Node, id *identity.Identity) *peer {
	t.Helper()
	p, err := connectPeer(t, n, id)
	if err != nil {
		t.Fatalf("connect %s: %v", id.PublicKey(), err)
	}
	return p
}

// expectPermissionError waits for a permissions violation mentioning subject.
func (p *peer) expectPermissionError(t *testing.T, subject string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case err := <-p.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return
			}
		case <-deadline:
			t.Fatalf("no permissions violation for %q within %s", subject, within)
		}
	}
}

func createRoom(t *testing.T, n *node.Node, owner *identity.Identity, members ...*identity.Identity) string {
	t.Helper()
	ctx := context.Background()
	id, salt := subjects.NewRoomID(owner.PublicKey(), subjects.ModeE2E)
	room, err := n.Store.CreateRoom(ctx, kvstore.Room{ID: id, Salt: salt, Mode: subjects.ModeE2E, Owner: owner.PublicKey()}, sealedKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if _, err := n.Store.AddMember(ctx, room.ID, m.PublicKey(), subjects.RoleMember, room.Epoch, sealedKey()); err != nil {
			t.Fatal(err)
		}
	}
	return room.Subject
}

// sealedKey is a stand-in sealed room key with a grant of the right
// length (the store checks neither).
func sealedKey() kvstore.SealedKey {
	return kvstore.SealedKey{Sealed: []byte("sealed"), Grant: make([]byte, subjects.GrantLen)}
}

func testGolden(t *testing.T, opts []nodetest.Option) {
	n := nodetest.Run(t, opts...)
	alice := nodetest.AddUser(t, n, "alice", false)
	p := mustConnect(t, n, alice)
	// A signed control-plane request, answered by the node's rooms service
	// on alice's own inbox.
	h, err := subjects.SignRequest(alice.KeyPair(), subjects.RoomsMine, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	reply, err := p.nc.RequestMsg(&nats.Msg{Subject: subjects.RoomsMine, Header: h}, 5*time.Second)
	if err != nil {
		t.Fatalf("request on the control plane: %v", err)
	}
	inbox, _ := subjects.InboxPrefix(alice.PublicKey())
	var mine struct {
		Rooms *[]json.RawMessage `json:"rooms"`
	}
	if err := json.Unmarshal(reply.Data, &mine); err != nil || mine.Rooms == nil || len(*mine.Rooms) != 0 || !strings.HasPrefix(reply.Subject, inbox+".") {
		t.Fatalf("reply %q on %q, want an empty room list on %s.*", reply.Data, reply.Subject, inbox)
	}
}

func testRefused(t *testing.T, opts []nodetest.Option) {
	n := nodetest.Run(t, opts...)
	victim := nodetest.AddUser(t, n, "victim", false)
	stranger := nodetest.NewIdentity(t)
	attacker := nodetest.NewIdentity(t)
	cases := map[string][]nats.Option{
		"unregistered key":  nodetest.ConnectOptions(stranger),
		"no credentials":    nil,
		"user and password": {nats.UserInfo("admin", "admin")},
		// The victim's public key, signed with the attacker's private key.
		"forged signature": {nats.Nkey(victim.PublicKey(), attacker.SignNonce)},
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			nc, err := nats.Connect(n.ClientURL(), o...)
			if err == nil {
				nc.Close()
				t.Fatal("admitted")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("connect error = %v, want an authorization violation", err)
			}
		})
	}
}

func testRevokedLive(t *testing.T, opts []nodetest.Option) {
	n := nodetest.Run(t, opts...)
	bob := nodetest.AddUser(t, n, "bob", false)
	p := mustConnect(t, n, bob)
	second := mustConnect(t, n, bob)

	start := time.Now()
	if _, err := n.Store.RevokeUser(context.Background(), bob.PublicKey()); err != nil {
		t.Fatal(err)
	}
	for i, c := range []*peer{p, second} {
		select {
		case at := <-c.disconnects:
			if took := at.Sub(start); took > refreshBound {
				t.Errorf("connection %d closed %s after revocation, want within %s", i, took, refreshBound)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("connection %d still open 5s after revocation", i)
		}
	}
	if _, err := connectPeer(t, n, bob); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("reconnect after revocation = %v, want an authorization violation", err)
	}
}

func testPermissions(t *testing.T, opts []nodetest.Option) {
	n := nodetest.Run(t, opts...)
	owner := nodetest.AddUser(t, n, "owner", false)
	member := nodetest.AddUser(t, n, "member", false)
	outsider := nodetest.AddUser(t, n, "outsider", false)
	room := createRoom(t, n, owner, member)

	o := mustConnect(t, n, owner)
	m := mustConnect(t, n, member)
	x := mustConnect(t, n, outsider)

	// The outsider can neither read the room nor another user's inbox.
	if _, err := x.nc.SubscribeSync(room); err != nil {
		t.Fatal(err)
	}
	x.expectPermissionError(t, room, 2*time.Second)
	memberInbox, _ := subjects.InboxAll(member.PublicKey())
	if _, err := x.nc.SubscribeSync(memberInbox); err != nil {
		t.Fatal(err)
	}
	x.expectPermissionError(t, memberInbox, 2*time.Second)
	// Nor publish to the room or reach JetStream, KV or micro discovery.
	for _, subj := range []string{room, "$KV.UNIBUS_users.x", "$JS.API.INFO", "$SRV.PING"} {
		if err := x.nc.Publish(subj, []byte("x")); err != nil {
			t.Fatal(err)
		}
		x.expectPermissionError(t, subj, 2*time.Second)
	}

	// Members use their room.
	sub, err := m.nc.SubscribeSync(room)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := o.nc.Publish(room, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	msg, err := sub.NextMsg(2 * time.Second)
	if err != nil || string(msg.Data) != "hello" {
		t.Fatalf("member did not get the room message: %v", err)
	}
}

// testMembershipRefresh: an invite grants the room within the bound, a
// removal takes it away within the bound, with no action by the client.
func testMembershipRefresh(t *testing.T, opts []nodetest.Option) {
	ctx := context.Background()
	n := nodetest.Run(t, opts...)
	owner := nodetest.AddUser(t, n, "owner", false)
	carol := nodetest.AddUser(t, n, "carol", false)
	room := createRoom(t, n, owner)
	roomID, _ := subjects.RoomIDFromSubject(room)
	o := mustConnect(t, n, owner)
	c := mustConnect(t, n, carol)

	sub, err := c.nc.SubscribeSync(room)
	if err != nil {
		t.Fatal(err)
	}
	c.expectPermissionError(t, room, 2*time.Second)

	// Invite: carol's existing subscription starts receiving.
	r, err := n.Store.GetRoom(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	invited := time.Now()
	if _, err := n.Store.AddMember(ctx, roomID, carol.PublicKey(), subjects.RoleMember, r.Epoch, sealedKey()); err != nil {
		t.Fatal(err)
	}
	receiveWithin(t, o.nc, sub, room, invited, refreshBound)

	// Removal: carol is disconnected, her resubscription refused.
	removed := time.Now()
	if err := n.Store.RemoveMember(ctx, roomID, carol.PublicKey()); err != nil {
		t.Fatal(err)
	}
	c.expectPermissionError(t, room, 5*time.Second)
	if took := time.Since(removed); took > refreshBound {
		t.Errorf("permissions refreshed %s after removal, want within %s", took, refreshBound)
	}
	for { // drain what arrived before the removal
		if _, err := sub.NextMsg(10 * time.Millisecond); err != nil {
			break
		}
	}
	if err := o.nc.Publish(room, []byte("after removal")); err != nil {
		t.Fatal(err)
	}
	if msg, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Fatalf("removed member still receives: %q", msg.Data)
	}
}

// receiveWithin publishes on room until sub receives, failing past bound.
func receiveWithin(t *testing.T, pub *nats.Conn, sub *nats.Subscription, room string, since time.Time, bound time.Duration) {
	t.Helper()
	deadline := since.Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := pub.Publish(room, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.NextMsg(50 * time.Millisecond); err == nil {
			if took := time.Since(since); took > bound {
				t.Errorf("room usable %s after the change, want within %s", took, bound)
			}
			return
		}
	}
	t.Fatalf("room not usable 5s after the change")
}

func testStoreUnavailable(t *testing.T, opts []nodetest.Option) {
	n := nodetest.Run(t, opts...)
	alice := nodetest.AddUser(t, n, "alice", true)
	mustConnect(t, n, alice)
	if err := n.Server.NATS().DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := connectPeer(t, n, alice)
	if err == nil {
		t.Fatal("admitted while the store is unavailable")
	}
	// The callout's own deadline (1s) is well inside the server's 2s.
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Fatalf("denial took %s, want within 2.5s", took)
	}
}

func testStoreSlow(t *testing.T, opts []nodetest.Option) {
	wrap := func(c *node.Config) {
		c.Callout.RequestTimeout = 300 * time.Millisecond
		c.Callout.Store = natstest.SlowCalloutStore{CalloutBackend: natstest.MemoryCalloutStore{}, Delay: 5 * time.Second}
	}
	n := nodetest.Run(t, append(opts, wrap)...)
	alice := nodetest.AddUser(t, n, "alice", false)
	start := time.Now()
	if _, err := connectPeer(t, n, alice); err == nil {
		t.Fatal("admitted while the store is slow")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("denial took %s, want within 2s", took)
	}
}
