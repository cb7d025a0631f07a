package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestChatAcrossNodes: clients on different nodes chat in an encrypted
// room.
func TestChatAcrossNodes(t *testing.T) {
	cl, _ := setup(t)
	alice := connect(t, cl, 0, nodetest.AddUser(t, cl.Node(0), "alice", false), true)
	bobID := nodetest.AddUser(t, cl.Node(1), "bob", false)
	bob := connect(t, cl, 2, bobID, true)
	if a, b := connectedNode(cl, alice), connectedNode(cl, bob); a != 0 || b != 2 {
		t.Fatalf("alice on n%d, bob on n%d; want n1 and n3", a+1, b+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room, err := alice.CreateRoom(ctx, "ops", subjects.ModeE2E)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Invite(ctx, room.RoomID, bobID.PublicKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Accept(ctx, room.RoomID); err != nil {
		t.Fatal(err)
	}
	got := make(chan client.Message, 16)
	// Membership is checked by the routing service: bob subscribes at
	// once, with no reconnect to wait for.
	sub, err := bob.Subscribe(ctx, room.RoomID, func(m client.Message) { got <- m }, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	deadline := time.After(15 * time.Second)
	for {
		if _, err := alice.Publish(ctx, room.RoomID, []byte("hello across nodes")); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if string(m.Data) != "hello across nodes" || m.Sender != alice.Identity().PublicKey() || m.Epoch != room.Epoch {
				t.Fatalf("bob got %+v", m)
			}
			if connectedNode(cl, bob) == connectedNode(cl, alice) {
				t.Fatal("alice and bob ended up on the same node")
			}
			return
		case <-time.After(300 * time.Millisecond):
		case <-deadline:
			t.Fatal("bob on n3 never received alice's message from n1")
		}
	}
}

// TestKillOneNodeUnderLoad kills the node the admin's connection is on,
// under a steady load of user additions: the control plane keeps answering
// from the other nodes, the client reconnects, and every acknowledged write
// is present afterwards, on every node once the killed one is back.
func TestKillOneNodeUnderLoad(t *testing.T) {
	cl, adminID := setup(t)
	const victim = 1
	admin := connect(t, cl, victim, adminID, false)
	if n := connectedNode(cl, admin); n != victim {
		t.Fatalf("admin on n%d, want n%d", n+1, victim+1)
	}
	var w userWrites
	stop := make(chan struct{})
	wg := w.run(t, admin, 4, stop)
	// Kill once the load is flowing: writes are being acknowledged.
	w.waitAcked(t, time.Time{}, 20, 30*time.Second, "writes before the kill")
	killedAt := time.Now()
	cl.Kill(victim)
	// Writes resume once the client has reconnected elsewhere and
	// JetStream has re-elected the leaders the victim held (a Raft
	// election timeout, 4-9 s, after a hard kill). Keep the load on until
	// 50 writes sent after the kill are acknowledged.
	deadline := killedAt.Add(30 * time.Second)
	for w.ackedSince(killedAt) < 50 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // poll interval; the deadline bounds the wait
	}
	close(stop)
	wg.Wait()

	recovered, ok := w.firstAckAfter(killedAt)
	if !ok {
		t.Fatalf("no write sent after the kill was acknowledged within 30s (%d failures: %v)", w.failures.Load(), w.failureKinds())
	}
	t.Logf("kill of n%d: %d writes acknowledged in all, %d sent after the kill; the first of those acknowledged %s after it; %d failed",
		victim+1, len(w.acked), w.ackedSince(killedAt), recovered.Sub(killedAt).Round(time.Millisecond), w.failures.Load())
	t.Logf("failures by kind: %v", w.failureKinds())
	if n := connectedNode(cl, admin); n == victim || n < 0 {
		t.Fatalf("admin not reconnected to a live node (on %d)", n)
	}
	if w.wrong.Load() != 0 {
		t.Fatalf("%d wrong answers", w.wrong.Load())
	}
	w.checkAllPresent(t, cl, 0)
	cl.Restart(victim)
	w.checkAllPresent(t, cl, victim)
}

// TestQuorumLoss kills two of three nodes: the survivor's callout refuses
// every connection and its control plane refuses every request, within
// their bounds; nothing is admitted. Once the two are back, service
// resumes with all data.
func TestQuorumLoss(t *testing.T) {
	cl, adminID := setup(t)
	bobID := nodetest.AddUser(t, cl.Node(0), "bob", false)
	admin := connect(t, cl, 2, adminID, false)
	ctx := context.Background()
	before := nodetest.NewIdentity(t)
	if _, err := admin.AddUser(ctx, before.PublicKey(), "before", false); err != nil {
		t.Fatal(err)
	}

	cl.Kill(0)
	cl.Kill(1)
	// Admission: within the bound (the store counts a replica silent for
	// 3 s as lost, plus one check and the callout's 1 s deadline) the
	// survivor refuses everyone, and keeps refusing.
	lostAt := time.Now()
	refused := func(id *identity.Identity) bool {
		nc, err := nats.Connect(cl.URL(2), append(nodetest.ConnectOptions(id), nats.Timeout(5*time.Second))...)
		if err == nil {
			nc.Close()
			return false
		}
		return true
	}
	for !refused(bobID) {
		if time.Since(lostAt) > 6*time.Second {
			t.Fatal("bob still admitted 6s after quorum was lost")
		}
		time.Sleep(200 * time.Millisecond) // poll interval; the 6 s bound above ends the wait
	}
	t.Logf("admission refused %s after quorum was lost", time.Since(lostAt).Round(time.Millisecond))
	for _, id := range []*identity.Identity{bobID, adminID, nodetest.NewIdentity(t)} {
		start := time.Now()
		if !refused(id) {
			t.Fatalf("%s admitted without quorum", id.PublicKey())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("refusal took %s", d)
		}
	}
	// Control plane: the admin's open connection gets a refusal (503),
	// never a success, within the request bound.
	start := time.Now()
	reqCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_, err := admin.AddUser(reqCtx, nodetest.NewIdentity(t).PublicKey(), "during", false)
	cancel()
	if err == nil {
		t.Fatal("a write was acknowledged without quorum")
	}
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != subjects.CodeUnavailable {
		t.Fatalf("write without quorum: %v, want a 503", err)
	}
	t.Logf("without quorum: write refused with %d after %s", apiErr.Code, time.Since(start).Round(time.Millisecond))

	restartedAt := time.Now()
	cl.Restart(0, 1)
	eventually(t, 30*time.Second, "bob admitted again", func() error {
		nc, err := nats.Connect(cl.URL(0), nodetest.ConnectOptions(bobID)...)
		if err == nil {
			nc.Close()
		}
		return err
	})
	eventually(t, 30*time.Second, "a write acknowledged again", func() error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := admin.AddUser(ctx, nodetest.NewIdentity(t).PublicKey(), "after", false)
		return err
	})
	t.Logf("service resumed %s after the restart began", time.Since(restartedAt).Round(time.Millisecond))
	// A read refused while the cluster settles (a 503) is retried; only a
	// 404 or a wrong record is a lost user.
	deadline := time.Now().Add(readBackTimeout)
	for _, pub := range []string{before.PublicKey(), bobID.PublicKey(), adminID.PublicKey()} {
		u, tries, err := readBack(deadline, func(ctx context.Context) (subjects.UserInfo, error) {
			return admin.GetUser(ctx, pub)
		})
		switch {
		case isNotFound(err):
			t.Fatalf("user %s lost: %v", pub, err)
		case err != nil:
			t.Fatalf("user %s unreadable after %d tries within %s: %v", pub, tries, readBackTimeout, err)
		case u.Pub != pub:
			t.Fatalf("user %s lost: read back as %+v", pub, u)
		}
	}
}

// idSigner signs requests with an identity (subjects.Signer).
type idSigner struct{ *identity.Identity }

func (s idSigner) PublicKey() (string, error) { return s.Identity.PublicKey(), nil }

// TestReplayAcrossNodes captures a signed request answered on node 1 and
// replays it, byte for byte, to node 3: the nonce is shared through R3 KV,
// so the replay is refused.
func TestReplayAcrossNodes(t *testing.T) {
	cl, _ := setup(t)
	aliceID := nodetest.AddUser(t, cl.Node(0), "alice", false)
	dial := func(i int) *nats.Conn {
		nc, err := nats.Connect(cl.URL(i), nodetest.ConnectOptions(aliceID)...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	on1, on3 := dial(0), dial(2)
	h, err := subjects.SignRequest(idSigner{aliceID}, subjects.RoomsMine, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	captured := &nats.Msg{Subject: subjects.RoomsMine, Header: h}
	first, err := on1.RequestMsg(captured, 5*time.Second)
	if err != nil || first.Header.Get(micro.ErrorCodeHeader) != "" {
		t.Fatalf("original request: %v %v %s", err, first.Header, first.Data)
	}
	replay := &nats.Msg{Subject: subjects.RoomsMine, Header: h}
	r, err := on3.RequestMsg(replay, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := r.Header.Get(micro.ErrorCodeHeader); code != fmt.Sprint(subjects.CodeUnauthenticated) {
		t.Fatalf("replay on n3 answered %q %s, want 401", code, r.Data)
	}
	t.Logf("replay on n3 refused: %s", r.Header.Get(micro.ErrorHeader))
}

// TestRevokeAcrossNodes: a revocation written through node 1 disconnects
// the user's connection on node 3 within a second.
func TestRevokeAcrossNodes(t *testing.T) {
	cl, adminID := setup(t)
	admin := connect(t, cl, 0, adminID, false)
	bobID := nodetest.AddUser(t, cl.Node(0), "bob", false)
	gone := make(chan time.Time, 1)
	nc, err := nats.Connect(cl.URL(2), append(nodetest.ConnectOptions(bobID),
		nats.NoReconnect(),
		nats.DisconnectErrHandler(func(*nats.Conn, error) {
			select {
			case gone <- time.Now():
			default:
			}
		}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	revokedAt := time.Now()
	if _, err := admin.RevokeUser(context.Background(), bobID.PublicKey()); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-gone:
		d := at.Sub(revokedAt)
		t.Logf("revoke on n1 → disconnect on n3: %s", d.Round(time.Millisecond))
		if d > time.Second {
			t.Fatalf("disconnect took %s, want < 1s", d)
		}
	case <-time.After(time.Second):
		t.Fatal("bob's connection on n3 still open 1s after the revocation on n1")
	}
	if nc, err := nats.Connect(cl.URL(2), nodetest.ConnectOptions(bobID)...); err == nil {
		nc.Close()
		t.Fatal("revoked bob reconnected")
	}
}

// TestRollingRestart restarts the three nodes one after the other under a
// load of writes and reads: no wrong answer, a bounded share of errors, and
// every acknowledged write present afterwards.
func TestRollingRestart(t *testing.T) {
	cl, adminID := setup(t)
	admin := connect(t, cl, 0, adminID, false)
	reader := connect(t, cl, 2, adminID, false)
	var w userWrites
	stop := make(chan struct{})
	wg := w.run(t, admin, 3, stop)
	// Readers check that known users read back right.
	var reads, readErrs, wrongReads atomic.Int64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			w.mu.Lock()
			n := len(w.acked)
			var pub string
			if n > 0 {
				pub = w.acked[n/2]
			}
			w.mu.Unlock()
			if pub == "" {
				time.Sleep(10 * time.Millisecond) // no user to read yet: pace the poll
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			u, err := reader.GetUser(ctx, pub)
			cancel()
			reads.Add(1)
			switch {
			case err != nil:
				readErrs.Add(1)
				time.Sleep(20 * time.Millisecond) // pace the load: no hot loop on errors
			case u.Pub != pub:
				wrongReads.Add(1)
			}
		}
	}()
	// Restart once the load is flowing: writes acknowledged and reads made.
	w.waitAcked(t, time.Time{}, 20, 30*time.Second, "writes before the first restart")
	eventually(t, 30*time.Second, "reads before the first restart", func() error {
		if n := reads.Load(); n < 5 {
			return fmt.Errorf("%d reads", n)
		}
		return nil
	})
	for i := range cl.Size() {
		cl.Kill(i)
		// The fault's shape: the node stays down for half a second
		// under load (not a wait for an event).
		time.Sleep(500 * time.Millisecond)
		restartedAt := time.Now()
		cl.Restart(i)
		// The next node goes down only once this one is back in full:
		// every replica of the users stream current (else the next kill
		// could take quorum with it), and writes acknowledged again.
		waitReplicasCurrent(t, cl, i)
		w.waitAcked(t, restartedAt, 10, 30*time.Second, fmt.Sprintf("writes after the restart of n%d", i+1))
	}
	close(stop)
	wg.Wait()
	<-readDone
	nReads, nReadErrs, nWrongReads := reads.Load(), readErrs.Load(), wrongReads.Load()
	writes := int64(len(w.acked)) + w.failures.Load()
	t.Logf("rolling restart: %d writes acknowledged, %d failed; %d reads, %d failed", len(w.acked), w.failures.Load(), nReads, nReadErrs)
	t.Logf("write failures by kind: %v", w.failureKinds())
	if w.wrong.Load() != 0 || nWrongReads != 0 {
		t.Fatalf("wrong answers: %d writes, %d reads", w.wrong.Load(), nWrongReads)
	}
	if len(w.acked) == 0 || nReads == 0 {
		t.Fatal("no load went through")
	}
	// Errors are bounded: the load kept going through most of it.
	if f := w.failures.Load(); f*2 > writes {
		t.Fatalf("%d of %d writes failed", f, writes)
	}
	if nReadErrs*2 > nReads {
		t.Fatalf("%d of %d reads failed", nReadErrs, nReads)
	}
	for i := range cl.Size() {
		w.checkAllPresent(t, cl, i)
	}
}
