package authcallout_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
)

// refreshBound is how fast a revocation must reach live connections.
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
			t.Run("MembershipNoKick", func(t *testing.T) { testMembershipNoKick(t, env.opts) })
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
	return connectPeerURL(t, n.ClientURL(), id, extra...)
}

// connectPeerURL connects id to url, reconnecting for ever, with its
// asynchronous errors, disconnects and reconnects collected.
func connectPeerURL(t *testing.T, url string, id *identity.Identity, extra ...nats.Option) (*peer, error) {
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
	nc, err := nats.Connect(url, opts...)
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

// testPermissions: a peer's permissions name no room. Members and
// outsiders alike may neither use a room's subject (the room log) nor
// another user's inbox, deliveries or events, nor JetStream, KV or micro
// discovery; a member listens to its own deliveries and events.
func testPermissions(t *testing.T, opts []nodetest.Option) {
	n := nodetest.Run(t, opts...)
	owner := nodetest.AddUser(t, n, "owner", false)
	member := nodetest.AddUser(t, n, "member", false)
	outsider := nodetest.AddUser(t, n, "outsider", false)
	room := createRoom(t, n, owner, member)

	m := mustConnect(t, n, member)
	x := mustConnect(t, n, outsider)

	for _, subj := range []string{mustSubject(t)(subjects.DeliverOf(member.PublicKey())), mustSubject(t)(subjects.Events(member.PublicKey()))} {
		if _, err := m.nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
	}
	// A refusal is recorded before the flush's answer is read.
	if err := m.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := m.nc.LastError(); err != nil {
		t.Fatalf("the member may not listen to its own deliveries and events: %v", err)
	}

	for name, p := range map[string]*peer{"member": m, "outsider": x} {
		t.Run(name, func(t *testing.T) {
			if _, err := p.nc.SubscribeSync(room); err != nil {
				t.Fatal(err)
			}
			p.expectPermissionError(t, room, 2*time.Second)
			for _, subj := range []string{room, "$KV.UNIBUS_users.x", "$JS.API.INFO", "$SRV.PING"} {
				if err := p.nc.Publish(subj, []byte("x")); err != nil {
					t.Fatal(err)
				}
				p.expectPermissionError(t, subj, 2*time.Second)
			}
		})
	}
	for _, subj := range []string{
		mustSubject(t)(subjects.InboxAll(member.PublicKey())),
		mustSubject(t)(subjects.DeliverOf(member.PublicKey())),
		mustSubject(t)(subjects.Events(member.PublicKey())),
	} {
		if _, err := x.nc.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		x.expectPermissionError(t, subj, 2*time.Second)
	}
}

// mustSubject returns a function that returns a subject, failing the test
// on the error of the builder that made it.
func mustSubject(t *testing.T) func(string, error) string {
	return func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

// testMembershipNoKick: invitations, joins and removals change no
// permission and so disconnect no one: the member's connection stays up
// and in use, while a revocation made after them is still acted on.
func testMembershipNoKick(t *testing.T, opts []nodetest.Option) {
	ctx := context.Background()
	n := nodetest.Run(t, opts...)
	owner := nodetest.AddUser(t, n, "owner", false)
	carol := nodetest.AddUser(t, n, "carol", false)
	sentinel := nodetest.AddUser(t, n, "sentinel", false)
	c := mustConnect(t, n, carol)
	s := mustConnect(t, n, sentinel)

	invited := createRoom(t, n, owner)
	invitedID, _ := subjects.RoomIDFromSubject(invited)
	added := createRoom(t, n, owner)
	addedID, _ := subjects.RoomIDFromSubject(added)
	start := time.Now()
	r, err := n.Store.GetRoom(ctx, invitedID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Store.Invite(ctx, invitedID, carol.PublicKey(), r.Epoch, sealedKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Store.AcceptInvitation(ctx, invitedID, carol.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if r, err = n.Store.GetRoom(ctx, addedID); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Store.AddMember(ctx, addedID, carol.PublicKey(), subjects.RoleMember, r.Epoch, sealedKey()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{invitedID, addedID} {
		if err := n.Store.RemoveMember(ctx, id, carol.PublicKey()); err != nil {
			t.Fatal(err)
		}
	}
	// The watcher is live: a revocation after the changes disconnects.
	if _, err := n.Store.RevokeUser(ctx, sentinel.PublicKey()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.disconnects:
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked sentinel is still connected 5s after its revocation")
	}
	// Beyond the kick delay of the last change, with room to spare.
	time.Sleep(time.Until(start.Add(4 * authcallout.KickDelay)))
	select {
	case at := <-c.disconnects:
		t.Fatalf("the member was disconnected %s after its membership changes began", at.Sub(start))
	default:
	}
	h, err := subjects.SignRequest(carol.KeyPair(), subjects.RoomsMine, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.nc.RequestMsg(&nats.Msg{Subject: subjects.RoomsMine, Header: h}, 5*time.Second); err != nil {
		t.Fatalf("the member's connection is not served after its membership changes: %v", err)
	}
	select {
	case <-c.disconnects:
		t.Fatal("the member was disconnected after its membership changes")
	default:
	}
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
