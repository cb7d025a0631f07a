package svc_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/node"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/natstest"
	"github.com/unibus/unibus/tests/nodetest"
)

// requestTimeout bounds every request a test makes: generous, because the
// machine is small and shared, but a hung service still fails the test.
const requestTimeout = 20 * time.Second

// testVersion is the version the test services run as.
const testVersion = "1.2.3"

// env is one control plane under test: a complete unibus node (embedded
// server, auth callout in enforce mode, access watcher, the services) and
// registered users, each with its own connection made through the callout.
// Every test gets its environment from newEnv, the only place that knows
// how the bus is secured.
type env struct {
	t     testing.TB
	node  *node.Node
	js    jetstream.JetStream
	store *kvstore.Store
	// storeCfg is the store's configuration, for other instances.
	storeCfg kvstore.Config
	// cfg is the configuration the node's services run with.
	cfg  svc.Config
	svc  *svc.Services
	logs *logBuffer

	mu sync.Mutex
	// peers tracks every user connection, for the kicks of the auth
	// callout's access watcher.
	peers map[*nats.Conn]*peer
	// peerErrs collects the connections' asynchronous errors (permission
	// violations, refused reconnections of revoked users).
	peerErrs *logBuffer
	// revoked holds the users the tests' requests revoked, whose
	// connections are rightly disconnected; kickable those that a test
	// disconnects otherwise on purpose (see noUnexpectedKicks).
	revoked, kickable map[string]bool

	// admin is the bootstrap administrator; alice, bob and carol are
	// registered users with encryption keys, not administrators.
	admin, alice, bob, carol *user
}

// user is a registered (or, from stranger, unregistered) identity.
type user struct {
	env       *env
	name      string
	kp        nkeys.KeyPair
	pub       string
	nc        *nats.Conn
	encKey    []byte
	encKeySig []byte
	// encKeyIssuedAt is the time of u's binding (version 1).
	encKeyIssuedAt time.Time
	// listen, when set, reads u's replies from u's own inbox while u's
	// requests travel over another user's connection (nc): a user the
	// callout does not admit has no connection of its own, and the
	// services answer a signed request only into its signer's inbox. It
	// is the store's connection, the one deployment connection that may
	// subscribe to every inbox.
	listen *nats.Conn
}

type envOptions struct {
	cfg    []func(*svc.Config)
	memory bool
}

type envOption func(*envOptions)

// withConfig adjusts the services' configuration before they start.
func withConfig(f func(*svc.Config)) envOption {
	return func(o *envOptions) { o.cfg = append(o.cfg, f) }
}

// withFileStorage keeps the buckets on disk rather than in memory.
func withFileStorage() envOption {
	return func(o *envOptions) { o.memory = false }
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	o := envOptions{memory: true}
	for _, opt := range opts {
		opt(&o)
	}
	e := &env{t: t, logs: &logBuffer{}, peers: map[*nats.Conn]*peer{}, peerErrs: &logBuffer{}, revoked: map[string]bool{}, kickable: map[string]bool{}}
	e.storeCfg = kvstore.Config{Replicas: 1, Memory: o.memory}
	e.cfg = svc.Config{
		Logger:  slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version: testVersion,
	}
	for _, f := range o.cfg {
		f(&e.cfg)
	}
	// The node bootstraps the first administrator, as unibusd does; the
	// others are registered through the service.
	e.admin = e.newIdentity(t, "admin")
	nodeLogs := &logBuffer{}
	e.node = nodetest.Run(t, func(c *node.Config) {
		c.Store = e.storeCfg
		c.Services = e.cfg
		c.Admin = e.admin.pub
		c.Logger = slog.New(slog.NewTextHandler(nodeLogs, nil))
	})
	t.Cleanup(func() {
		e.noUnexpectedKicks(t)
		if t.Failed() {
			t.Logf("node log (nats-server lines aside):\n%s", nodeLogs.without("component=nats-server"))
			t.Logf("services log:\n%s", e.logs)
			t.Logf("connection errors:\n%s", e.peerErrs)
		}
	})
	e.store, e.svc = e.node.Store, e.node.Services()
	e.cfg.Store, e.cfg.Conn = e.node.Store, e.node.ServiceConn
	js, err := jetstream.New(e.node.StoreConn)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	e.js = js

	e.connect(t, e.admin)
	e.setKey(t, e.admin)
	e.alice = e.register(t, "alice")
	e.bob = e.register(t, "bob")
	e.carol = e.register(t, "carol")
	return e
}

// serviceConn connects as the service user in-process, as unibusd's
// services do.
func (e *env) serviceConn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := e.node.ServiceUserConn(nats.Name("unibus-svc"))
	if err != nil {
		t.Fatalf("connect services: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func (e *env) openStore(t testing.TB, js jetstream.JetStream) *kvstore.Store {
	t.Helper()
	st, err := kvstore.Open(context.Background(), js, e.storeCfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return st
}

// start starts an instance of the services, stopped by t.Cleanup.
func (e *env) start(t testing.TB, cfg svc.Config) *svc.Services {
	t.Helper()
	s, err := svc.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start services: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop services: %v", err)
		}
	})
	return s
}

// secondInstance starts another instance of the services with its own
// connection and store handle, as on another node.
func (e *env) secondInstance(t testing.TB) *svc.Services {
	t.Helper()
	nc := e.serviceConn(t)
	storeConn, err := e.node.StoreUserConn(nats.Name("unibus-store"))
	if err != nil {
		t.Fatalf("connect store: %v", err)
	}
	t.Cleanup(storeConn.Close)
	js, err := jetstream.New(storeConn)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	cfg := e.cfg
	cfg.Conn = nc
	cfg.Store = e.openStore(t, js)
	return e.start(t, cfg)
}

func (e *env) newIdentity(t testing.TB, name string) *user {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return &user{env: e, name: name, kp: kp, pub: pub, encKey: randomBytes(t, 1216)}
}

// connect opens u's connection as a peer does: authenticated by its nkey
// through the auth callout (so u must be registered), replying on u's own
// inbox prefix as the callout's permissions require, and reconnecting
// after the kicks that refresh its permissions.
func (e *env) connect(t testing.TB, u *user) {
	t.Helper()
	prefix, err := subjects.InboxPrefix(u.pub)
	if err != nil {
		t.Fatal(err)
	}
	p := newPeer(u.pub)
	u.nc = natstest.Connect(t, e.node.ClientURL(),
		nats.Name(u.name),
		nats.Nkey(u.pub, u.kp.Sign),
		nats.CustomInboxPrefix(prefix),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.IgnoreAuthErrorAbort(),
		nats.DisconnectErrHandler(func(nc *nats.Conn, _ error) {
			// Closing the connection (at the end of the test) is no kick.
			if !nc.IsClosed() {
				p.event(true)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { p.event(false) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			fmt.Fprintf(e.peerErrs, "%s %s: %v\n", time.Now().Format(time.StampMilli), u.name, err)
		}),
	)
	p.nc = u.nc
	e.mu.Lock()
	e.peers[u.nc] = p
	e.mu.Unlock()
}

// register adds a user through users.add (as the admin), connects it and
// publishes its encryption key through users.setkey (as itself).
func (e *env) register(t testing.TB, name string) *user {
	t.Helper()
	u := e.newIdentity(t, name)
	call[subjects.UserInfo](t, e.admin, subjects.UsersAdd, subjects.AddUserRequest{Pub: u.pub, Name: name})
	e.connect(t, u)
	e.setKey(t, u)
	return u
}

// setKey publishes u's encryption key through users.setkey.
func (e *env) setKey(t testing.TB, u *user) {
	t.Helper()
	issued := time.Now().Truncate(time.Second)
	sig, err := subjects.SignEncKeyBinding(u.kp, u.encKey, 1, issued)
	if err != nil {
		t.Fatal(err)
	}
	call[subjects.UserInfo](t, u, subjects.UsersSetKey, subjects.SetKeyRequest{EncKey: u.encKey, EncKeySig: sig, EncKeyVersion: 1, EncKeyIssuedAt: issued})
	u.encKeySig, u.encKeyIssuedAt = sig, issued.UTC()
}

// revoke revokes u (as the admin). The auth callout disconnects a revoked
// user and refuses it from then on, so its requests then travel over via's
// connection, and its replies are read from its inbox through listen.
func (e *env) revoke(t testing.TB, u, via *user) {
	t.Helper()
	call[subjects.UserInfo](t, e.admin, subjects.UsersRevoke, subjects.RevokeUserRequest{Pub: u.pub})
	u.nc, u.listen = via.nc, e.node.StoreConn
}

// stranger is an identity that is not registered. The auth callout does
// not let it connect, so its requests travel over the admin's connection,
// and its replies are read from its inbox through listen.
func (e *env) stranger(t testing.TB) *user {
	t.Helper()
	u := e.newIdentity(t, "stranger")
	u.nc, u.listen = e.admin.nc, e.node.StoreConn
	return u
}

// reqOption changes how a request is signed or sent.
type reqOption func(*reqSpec)

type reqSpec struct {
	at      time.Time
	signer  nkeys.KeyPair
	unsign  bool
	headers nats.Header
	tamper  func(*nats.Msg)
}

// signedAt signs with the timestamp at.
func signedAt(at time.Time) reqOption { return func(r *reqSpec) { r.at = at } }

// signedBy signs with kp instead of the sender's key.
func signedBy(kp nkeys.KeyPair) reqOption { return func(r *reqSpec) { r.signer = kp } }

// unsigned sends no signature headers but hdr.
func unsigned(hdr nats.Header) reqOption {
	return func(r *reqSpec) { r.unsign, r.headers = true, hdr }
}

// tampered changes the message after it was signed.
func tampered(f func(*nats.Msg)) reqOption { return func(r *reqSpec) { r.tamper = f } }

// msg builds u's request to subject: body is raw bytes or a value to
// encode as JSON.
func (u *user) msg(t testing.TB, subject string, body any, opts ...reqOption) *nats.Msg {
	t.Helper()
	spec := reqSpec{at: time.Now(), signer: u.kp}
	for _, o := range opts {
		o(&spec)
	}
	data, ok := body.([]byte)
	if !ok && body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatalf("encode request: %v", err)
		}
	}
	m := nats.NewMsg(subject)
	m.Data = data
	if spec.unsign {
		for k, v := range spec.headers {
			m.Header[k] = v
		}
	} else {
		h, err := subjects.SignRequest(spec.signer, subject, data, spec.at)
		if err != nil {
			t.Fatalf("sign request: %v", err)
		}
		m.Header = h
	}
	if spec.tamper != nil {
		spec.tamper(m)
	}
	return m
}

// send sends m on u's connection and returns the reply. m is sent as it
// is: a reply lost to a kick fails the test (request signs again instead).
func (u *user) send(t testing.TB, m *nats.Msg) *nats.Msg {
	t.Helper()
	return u.roundTrip(t, m, nil)
}

// request signs and sends one request as u. Should the auth callout's
// access watcher disconnect u's connection while the request is in flight
// and the reply not follow it, the request is signed again (a fresh
// nonce) and sent once more.
func (u *user) request(t testing.TB, subject string, body any, opts ...reqOption) *nats.Msg {
	t.Helper()
	return u.roundTrip(t, u.msg(t, subject, body, opts...), func() *nats.Msg { return u.msg(t, subject, body, opts...) })
}

// call makes a request that must succeed and decodes its reply.
func call[Resp any](t testing.TB, u *user, subject string, body any, opts ...reqOption) Resp {
	t.Helper()
	r := u.request(t, subject, body, opts...)
	return decode[Resp](t, r)
}

// decode decodes a successful reply strictly.
func decode[Resp any](t testing.TB, r *nats.Msg) Resp {
	t.Helper()
	if code := r.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("%s: error %s %q, want success", r.Subject, code, r.Header.Get(micro.ErrorHeader))
	}
	var out Resp
	dec := json.NewDecoder(bytes.NewReader(r.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("decode reply %s: %v", r.Data, err)
	}
	return out
}

// wantError checks that r is a micro error reply with code, whose message
// contains every one of want, the same in the headers and the body, and
// leaks no internals.
func wantError(t testing.TB, r *nats.Msg, code int, want ...string) {
	t.Helper()
	gotCode := r.Header.Get(micro.ErrorCodeHeader)
	desc := r.Header.Get(micro.ErrorHeader)
	if gotCode != strconv.Itoa(code) {
		t.Fatalf("error code %q (%q, body %s), want %d", gotCode, desc, r.Data, code)
	}
	var body subjects.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body %q: %v", r.Data, err)
	}
	if body.Code != code || body.Error != desc || desc == "" {
		t.Fatalf("error body %+v, headers %s %q: want code %d and the same message", body, gotCode, desc, code)
	}
	for _, w := range want {
		if !strings.Contains(desc, w) {
			t.Errorf("error %d %q does not mention %q", code, desc, w)
		}
	}
	for _, leak := range []string{"json:", "nats:", "jetstream", "$KV", "$JS", "UNIBUS_", "context deadline", "kvstore", "invalid argument"} {
		if strings.Contains(desc, leak) {
			t.Errorf("error %d %q leaks internals (%q)", code, desc, leak)
		}
	}
}

// snapshot is the last sequence of every state bucket (nonces aside): any
// write moves it.
type snapshot map[string]uint64

func (e *env) snapshot(t testing.TB) snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	out := snapshot{}
	for _, b := range []string{kvstore.BucketUsers, kvstore.BucketRooms, kvstore.BucketMembers, kvstore.BucketRoomsByMember, kvstore.BucketRoomKeys, kvstore.BucketInvitations} {
		kv, err := e.js.KeyValue(ctx, b)
		if err != nil {
			t.Fatalf("bucket %s: %v", b, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatalf("bucket %s status: %v", b, err)
		}
		out[b] = st.(*jetstream.KeyValueBucketStatus).StreamInfo().State.LastSeq
	}
	return out
}

// unchanged fails if any state bucket was written since before.
func (e *env) unchanged(t testing.TB, before snapshot) {
	t.Helper()
	after := e.snapshot(t)
	for b, seq := range before {
		if after[b] != seq {
			t.Errorf("bucket %s written (last sequence %d → %d)", b, seq, after[b])
		}
	}
}

// createRoom creates a room owned by u (an encrypted one with an ID made
// from u's key, and a random sealed key and grant, the stand-ins for the
// client's HPKE sealing and signature).
func (e *env) createRoom(t testing.TB, u *user, mode string) subjects.RoomInfo {
	t.Helper()
	req := subjects.CreateRoomRequest{Name: "room of " + u.name, Mode: mode}
	if mode == subjects.ModeE2E {
		req.RoomID, req.Salt = subjects.NewRoomID(u.pub, mode)
		req.SealedKey, req.Grant = sealedKey(t), grant(t)
	}
	return call[subjects.RoomInfo](t, u, subjects.RoomsCreate, req)
}

// invite makes member a member of the owner's room: the owner invites it,
// with a sealed key and a grant in an e2e room, and it accepts.
func (e *env) invite(t testing.TB, owner *user, room subjects.RoomInfo, member *user) subjects.RoomInfo {
	t.Helper()
	e.propose(t, owner, room, member)
	return e.accept(t, member, room)
}

// propose makes the owner invite member, with a sealed key and a grant in
// an e2e room: a pending invitation, which member has yet to answer.
func (e *env) propose(t testing.TB, owner *user, room subjects.RoomInfo, member *user) subjects.MemberInfo {
	t.Helper()
	return call[subjects.MemberInfo](t, owner, subjects.RoomsInvite, inviteRequest(t, owner, room, member))
}

// accept makes u accept its invitation to room.
func (e *env) accept(t testing.TB, u *user, room subjects.RoomInfo) subjects.RoomInfo {
	t.Helper()
	return call[subjects.RoomInfo](t, u, subjects.RoomsAccept, subjects.RoomRequest{RoomID: room.RoomID})
}

// inviteRequest is the owner's signed invitation of member to room at the
// room's epoch, with a stand-in sealed key and grant in an e2e room.
func inviteRequest(t testing.TB, owner *user, room subjects.RoomInfo, member *user) subjects.InviteRequest {
	t.Helper()
	req := subjects.InviteRequest{RoomID: room.RoomID, Pub: member.pub}
	if room.Mode == subjects.ModeE2E {
		req.Epoch, req.SealedKey, req.Grant = room.Epoch, sealedKey(t), grant(t)
	}
	if err := subjects.SignOwner(owner.kp, &req); err != nil {
		t.Fatal(err)
	}
	return req
}

// sealedKey is an opaque stand-in for a room key sealed with HPKE.
func sealedKey(t testing.TB) []byte { return randomBytes(t, 1120+48) }

// newRoomID returns a new room ID of u's (without its salt: for requests
// that name a room nobody created).
func newRoomID(u *user) string {
	id, _ := subjects.NewRoomID(u.pub, subjects.ModeE2E)
	return id
}

// grant is a stand-in for the owner's key grant: the service checks only
// its length (it cannot verify it without the room key).
func grant(t testing.TB) []byte { return randomBytes(t, subjects.GrantLen) }

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// logBuffer collects the services' log output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// without returns the log without the lines that contain drop.
func (l *logBuffer) without(drop string) string {
	var b strings.Builder
	for line := range strings.Lines(l.String()) {
		if !strings.Contains(line, drop) {
			b.WriteString(line)
		}
	}
	return b.String()
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
