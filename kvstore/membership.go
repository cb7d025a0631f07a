package kvstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/subjects"
)

// The membership view: who may send to and receive a room's frames, in
// memory, kept current by watching the buckets, so that the routing
// service decides every send without a read. It fails closed: while it
// cannot vouch for being current (not loaded yet, a watch ended, the
// connection lost, a bucket's leader unreachable, a watch stalled behind
// its bucket), Check answers ErrViewUnavailable, and the view reloads
// everything in the background (with backoff) until it is current again.

// RoomPolicy is what the routing service needs of a room: its mode,
// history policy (subjects.HistoryKeep or subjects.HistoryNone; a room
// stored before the room log keeps none), owner, and its own maximum age
// of frames (Room.HistoryMaxAge; 0: the deployment's).
type RoomPolicy struct {
	Mode, History, Owner string
	MaxAge               time.Duration
}

// Timing of the view.
const (
	// viewProbeInterval is how often the view checks that its connection
	// is the one it loaded on and that its watches keep up with the
	// buckets (each bucket's stream info, from its leader).
	viewProbeInterval = 2 * time.Second
	// viewMinBackoff and viewMaxBackoff bound the wait before a reload.
	viewMinBackoff = 100 * time.Millisecond
	viewMaxBackoff = 5 * time.Second
	// viewLoadTimeouts is how many store operation timeouts a load may
	// take: every record of three buckets.
	viewLoadTimeouts = 6
)

// MembershipView follows the rooms, members and users buckets (see
// WatchMembership). It owns one goroutine, stopped by Stop or by the
// context it was started with.
type MembershipView struct {
	store  *Store
	nc     *nats.Conn
	cancel context.CancelFunc
	wg     sync.WaitGroup
	status chan nats.Status

	mu sync.RWMutex
	// state is the current view; nil while unavailable.
	state *viewState
	// down is what Check returns while state is nil.
	down error
}

// viewState is a loaded view: the rooms' policies, their owners and
// members (not invitees), and the users that are revoked (or whose
// records were deleted or are invalid).
type viewState struct {
	rooms   map[string]RoomPolicy
	members map[string]map[string]struct{}
	revoked map[string]struct{}
}

// viewWatch is one bucket's watch in a view's generation.
type viewWatch struct {
	kv     jetstream.KeyValue
	w      jetstream.KeyWatcher
	apply  func(*viewState, jetstream.KeyValueEntry)
	maxRev uint64 // the highest revision seen (or known covered)
	lagAt  uint64 // the stream's last sequence at a probe the watch was behind
}

// viewGen is one load of the view: three watches on one connection.
type viewGen struct {
	watches    []*viewWatch
	cancel     context.CancelFunc
	reconnects uint64
}

// WatchMembership loads the current membership of every room and
// returns a view that follows it, once loaded (bounded by a few
// operation timeouts). Records that are not valid are treated as absent
// (a user's as revoked).
func (s *Store) WatchMembership(ctx context.Context) (*MembershipView, error) {
	nc := s.js.Conn()
	ctx, cancel := context.WithCancel(ctx)
	v := &MembershipView{store: s, nc: nc, cancel: cancel}
	v.status = nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CONNECTED, nats.CLOSED)
	gen, st, err := v.load(ctx)
	if err != nil {
		nc.RemoveStatusListener(v.status)
		cancel()
		return nil, fmt.Errorf("watch membership: %w", err)
	}
	v.state = st
	v.wg.Go(func() { v.run(ctx, gen, st) })
	return v, nil
}

// Stop stops the view and waits for its goroutine; Check answers
// ErrViewUnavailable afterwards.
func (v *MembershipView) Stop() {
	v.cancel()
	v.wg.Wait()
}

// Check returns the policy of a room that pub may send to: a current
// member (owner or member, not invited) whose user is not revoked. No
// such room is ErrNotFound, not a member ErrNotMember, a view that cannot
// vouch for being current ErrViewUnavailable.
func (v *MembershipView) Check(roomID, pub string) (RoomPolicy, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	st := v.state
	if st == nil {
		return RoomPolicy{}, v.down
	}
	if !v.nc.IsConnected() {
		return RoomPolicy{}, fmt.Errorf("%w: disconnected", ErrViewUnavailable)
	}
	p, ok := st.rooms[roomID]
	if !ok {
		return RoomPolicy{}, fmt.Errorf("room %s: %w", roomID, ErrNotFound)
	}
	if _, ok := st.members[roomID][pub]; !ok {
		return RoomPolicy{}, fmt.Errorf("%s in room %s: %w", pub, roomID, ErrNotMember)
	}
	if _, ok := st.revoked[pub]; ok {
		return RoomPolicy{}, fmt.Errorf("%s (revoked) in room %s: %w", pub, roomID, ErrNotMember)
	}
	return p, nil
}

// Members returns a room's current members, owner included, sorted:
// neither invitees nor revoked users. None when there is no such room or
// the view is unavailable.
func (v *MembershipView) Members(roomID string) []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	st := v.state
	if st == nil || !v.nc.IsConnected() {
		return nil
	}
	if _, ok := st.rooms[roomID]; !ok {
		return nil
	}
	out := make([]string, 0, len(st.members[roomID]))
	for pub := range st.members[roomID] {
		if _, revoked := st.revoked[pub]; !revoked {
			out = append(out, pub)
		}
	}
	slices.Sort(out)
	return out
}

// run follows gen until it breaks, then reloads, until ctx is done.
func (v *MembershipView) run(ctx context.Context, gen *viewGen, st *viewState) {
	defer v.nc.RemoveStatusListener(v.status)
	defer v.setDown(errors.New("stopped"))
	backoff := viewMinBackoff
	for {
		err := v.follow(ctx, gen, st)
		gen.stop()
		if ctx.Err() != nil {
			return
		}
		v.setDown(err)
		v.store.logger.Warn("membership view unavailable: reloading", "reason", err.Error())
		for {
			if sleepCtx(ctx, backoff) != nil {
				return
			}
			gen, st, err = v.load(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			backoff = min(backoff*2, viewMaxBackoff)
			v.store.logger.Warn("membership view: reload failed", "reason", err.Error(), "retry_in", backoff)
		}
		backoff = viewMinBackoff
		v.mu.Lock()
		v.state, v.down = st, nil
		v.mu.Unlock()
		v.store.logger.Info("membership view reloaded")
	}
}

// setDown makes the view unavailable for reason.
func (v *MembershipView) setDown(reason error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.state = nil
	v.down = fmt.Errorf("%w: %s", ErrViewUnavailable, reason.Error())
}

// load starts a generation of watches and returns it with the state its
// initial values make, once all three have delivered them.
func (v *MembershipView) load(ctx context.Context) (*viewGen, *viewState, error) {
	s := v.store
	if !v.nc.IsConnected() {
		return nil, nil, errors.New("disconnected")
	}
	gctx, cancel := context.WithCancel(ctx)
	gen := &viewGen{cancel: cancel, reconnects: v.nc.Stats().Reconnects}
	st := &viewState{rooms: map[string]RoomPolicy{}, members: map[string]map[string]struct{}{}, revoked: map[string]struct{}{}}
	lctx, lcancel := context.WithTimeout(ctx, viewLoadTimeouts*s.opTimeout)
	defer lcancel()
	for _, w := range []*viewWatch{
		{kv: s.rooms, apply: s.applyRoom},
		{kv: s.members, apply: s.applyMember},
		{kv: s.users, apply: s.applyUser},
	} {
		// Whatever the stream holds up to its last sequence now, the
		// watch's initial values cover (a message removed since, a
		// purged delete marker, is not missed).
		last, err := streamLastSeq(lctx, s.js, kvStream(w.kv.Bucket()))
		if err != nil {
			gen.stop()
			return nil, nil, err
		}
		w.maxRev = last
		if w.w, err = w.kv.WatchAll(gctx); err != nil {
			gen.stop()
			return nil, nil, fmt.Errorf("watch %s: %w", w.kv.Bucket(), err)
		}
		gen.watches = append(gen.watches, w)
	}
	// The three watches deliver at once (a blocked watch would miss its
	// heartbeats): each until its marker of the end of initial values.
	rooms, members, users := gen.watches[0], gen.watches[1], gen.watches[2]
	loading := 3
	initial := func(w *viewWatch, e jetstream.KeyValueEntry, ok bool) error {
		switch {
		case !ok:
			return fmt.Errorf("watch %s ended while loading", w.kv.Bucket())
		case e == nil:
			loading--
		default:
			w.apply(st, e)
			w.maxRev = max(w.maxRev, e.Revision())
		}
		return nil
	}
	for loading > 0 {
		var err error
		select {
		case e, ok := <-rooms.w.Updates():
			err = initial(rooms, e, ok)
		case e, ok := <-members.w.Updates():
			err = initial(members, e, ok)
		case e, ok := <-users.w.Updates():
			err = initial(users, e, ok)
		case <-lctx.Done():
			err = fmt.Errorf("load the membership: %w", lctx.Err())
		}
		if err != nil {
			gen.stop()
			return nil, nil, err
		}
	}
	return gen, st, nil
}

// stop ends the generation's watches.
func (g *viewGen) stop() {
	g.cancel()
	for _, w := range g.watches {
		_ = w.w.Stop()
	}
}

// follow applies gen's updates to st (the published state) until a
// watch ends, the connection is lost or changes, a probe fails, or ctx
// is done; it returns why.
func (v *MembershipView) follow(ctx context.Context, gen *viewGen, st *viewState) error {
	probe := time.NewTicker(viewProbeInterval)
	defer probe.Stop()
	rooms, members, users := gen.watches[0], gen.watches[1], gen.watches[2]
	update := func(w *viewWatch, e jetstream.KeyValueEntry, ok bool) error {
		if !ok {
			return fmt.Errorf("watch %s ended", w.kv.Bucket())
		}
		if e == nil {
			return nil
		}
		v.mu.Lock()
		w.apply(st, e)
		v.mu.Unlock()
		w.maxRev = max(w.maxRev, e.Revision())
		return nil
	}
	for {
		var err error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-rooms.w.Updates():
			err = update(rooms, e, ok)
		case e, ok := <-members.w.Updates():
			err = update(members, e, ok)
		case e, ok := <-users.w.Updates():
			err = update(users, e, ok)
		case status, ok := <-v.status:
			if !ok {
				return errors.New("connection status no longer reported")
			}
			if status != nats.CONNECTED || v.nc.Stats().Reconnects != gen.reconnects {
				return fmt.Errorf("connection %s", status)
			}
		case <-probe.C:
			err = v.probe(ctx, gen)
		}
		if err != nil {
			return err
		}
	}
}

// probe checks that the connection is the one gen was loaded on and that
// each watch keeps up with its bucket: a watch behind its stream's last
// sequence at one probe that has not caught up with it by the next has
// stalled.
func (v *MembershipView) probe(ctx context.Context, gen *viewGen) error {
	if !v.nc.IsConnected() || v.nc.Stats().Reconnects != gen.reconnects {
		return errors.New("connection lost or replaced")
	}
	ctx, cancel := v.store.bound(ctx)
	defer cancel()
	for _, w := range gen.watches {
		last, err := streamLastSeq(ctx, v.store.js, kvStream(w.kv.Bucket()))
		if err != nil {
			return err
		}
		switch {
		case w.lagAt != 0 && w.maxRev < w.lagAt:
			return fmt.Errorf("watch %s stalled at revision %d, behind %d", w.kv.Bucket(), w.maxRev, w.lagAt)
		case last > w.maxRev:
			w.lagAt = last
		default:
			w.lagAt = 0
		}
	}
	return nil
}

// streamLastSeq returns stream's last sequence, from its leader.
func streamLastSeq(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", stream, err)
	}
	return st.CachedInfo().State.LastSeq, nil
}

// applyRoom applies a rooms bucket entry: a valid room's policy, or the
// room gone.
func (s *Store) applyRoom(st *viewState, e jetstream.KeyValueEntry) {
	if e.Operation() == jetstream.KeyValuePut {
		if r, err := decodeRecord[Room](s, BucketRooms, e.Key(), e.Value()); err == nil {
			st.rooms[r.ID] = RoomPolicy{Mode: r.Mode, History: cmp.Or(r.History, subjects.HistoryNone), Owner: r.Owner, MaxAge: r.HistoryMaxAge}
			return
		}
	}
	delete(st.rooms, e.Key())
}

// applyMember applies a members bucket entry: a valid member added, or
// the member gone.
func (s *Store) applyMember(st *viewState, e jetstream.KeyValueEntry) {
	roomID, pub, ok := strings.Cut(e.Key(), ".")
	if !ok {
		return
	}
	if e.Operation() == jetstream.KeyValuePut {
		if _, err := decodeRecord[Member](s, BucketMembers, e.Key(), e.Value()); err == nil {
			set := st.members[roomID]
			if set == nil {
				set = map[string]struct{}{}
				st.members[roomID] = set
			}
			set[pub] = struct{}{}
			return
		}
	}
	if set := st.members[roomID]; set != nil {
		delete(set, pub)
		if len(set) == 0 {
			delete(st.members, roomID)
		}
	}
}

// applyUser applies a users bucket entry: a user deleted, revoked or
// whose record is not valid is revoked (as AccessWatcher has it).
func (s *Store) applyUser(st *viewState, e jetstream.KeyValueEntry) {
	if e.Operation() == jetstream.KeyValuePut {
		if u, err := decodeRecord[User](s, BucketUsers, e.Key(), e.Value()); err == nil && !u.Revoked() {
			delete(st.revoked, e.Key())
			return
		}
	}
	st.revoked[e.Key()] = struct{}{}
}
