package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// Bounds of the bot's work.
const (
	// replyTimeout bounds answering one message.
	replyTimeout = 10 * time.Second
	// answerAttempts is how often the bot tries to answer a message
	// before it gives up on it (each retry first checks that the answer
	// was not stored after all).
	answerAttempts = 3
	// opTimeout bounds each of the bot's other steps: listing, accepting,
	// joining a room (reading what it answered there, subscribing).
	opTimeout = 2 * client.DefaultRequestTimeout
	// retryMin and retryMax bound the backoff of a room the bot could not
	// join, and of the start-up listing of its rooms and invitations.
	retryMin, retryMax = 250 * time.Millisecond, 15 * time.Second
)

// worker is the bot. Set its fields, then call Run.
type worker struct {
	// IdentityFile is the bot's nkey seed file; its encryption key lives
	// beside it (client.EncryptionKeyPath).
	IdentityFile string
	// CursorFile keeps the bot's place in its rooms and events across
	// restarts; empty means IdentityFile + CursorSuffix.
	CursorFile string
	// Server is the NATS URL; CA, when set, pins TLS to that CA.
	Server, CA string
	// Insecure allows a plaintext Server beyond loopback
	// (client.WithInsecure).
	Insecure bool
	// AcceptFrom, when not empty, are the owners (public keys) whose
	// invitations the bot accepts; the others stay pending. Empty: the
	// bot accepts every invitation.
	AcceptFrom []string
	// Logger receives what the bot does; nil discards it.
	Logger *slog.Logger
}

// Run connects, joins the bot's rooms and answers messages until ctx ends,
// then unsubscribes, saves its cursor, closes the connection and returns
// nil. It returns an error only when it cannot start: a bad identity, the
// bus unreachable or refusing the bot.
//
// Nothing polls: the bot learns of invitations and removals from its
// events (client.Conn.Events), and each room's messages come from a
// subscription that resumes where the cursor says, across reconnections
// and restarts.
func (w *worker) Run(ctx context.Context) error {
	log := w.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id, err := identity.Load(w.IdentityFile)
	if err != nil {
		return err // says "load identity …" already
	}
	opts := []client.Option{client.WithName("unibus-worker")}
	if w.CA != "" {
		opts = append(opts, client.WithCA(w.CA))
	}
	if w.Insecure {
		opts = append(opts, client.WithInsecure())
	}
	conn, err := client.Connect(ctx, w.Server, id, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Register the encryption key: members seal room keys to it when they
	// invite the bot to an encrypted room.
	if err := conn.SetEncryptionKey(ctx, client.EncryptionKeyPath(w.IdentityFile)); err != nil {
		return fmt.Errorf("register encryption key: %w", err)
	}
	cursorFile := w.CursorFile
	if cursorFile == "" {
		cursorFile = w.IdentityFile + CursorSuffix
	}
	cur, err := loadCursor(cursorFile)
	if err != nil {
		// Safe to start over: answers already given are found again.
		log.Warn("cursor unreadable: starting from the first message of each room", "file", cursorFile, "err", err)
	}
	log.Info("worker started", "pub", id.PublicKey(), "server", w.Server, "cursor", cursorFile)

	b := &bot{
		conn: conn, self: id.PublicKey(), log: log, ctx: ctx,
		cursorFile: cursorFile, cur: cur,
		rooms: map[string]*roomSub{}, answers: map[string]answerState{}, ignored: map[string]bool{},
	}
	if len(w.AcceptFrom) > 0 {
		b.acceptFrom = map[string]bool{}
		for _, pub := range w.AcceptFrom {
			b.acceptFrom[pub] = true
		}
	}
	defer b.stop()

	// Events first, so that nothing that happens while the bot lists its
	// invitations and rooms goes unseen.
	var from uint64
	if cur.Events > 0 {
		from = cur.Events + 1
	}
	events, err := conn.Events(ctx, from, b.event)
	if err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	defer func() { _ = events.Stop() }()
	if !b.retry("list invitations and rooms", b.catchUp) {
		return nil // ctx ended
	}
	<-ctx.Done()
	log.Info("worker stopping")
	return nil
}

// bot is the state of a running worker: its connection, one subscription
// per room, its cursor and the answers it knows it gave.
type bot struct {
	conn *client.Conn
	self string // the bot's public key
	log  *slog.Logger
	// ctx is Run's: it ends when the worker stops.
	ctx context.Context

	// acceptFrom, when not nil, are the owners whose invitations the bot
	// accepts; ignored the invitations of others it has logged (once).
	acceptFrom map[string]bool

	// wg tracks the goroutines that retry joining a room.
	wg sync.WaitGroup

	mu      sync.Mutex
	stopped bool
	ignored map[string]bool
	rooms   map[string]*roomSub // room ID → subscription
	// cur is the bot's place, saved to cursorFile.
	cur        cursor
	cursorFile string
	// answers: message ID → what of its answer the bot has seen in the
	// room (or sent). An entry goes when the answer's reaction, its last
	// part, comes back through the subscription: the message, earlier in
	// the room, can no longer come.
	answers map[string]answerState
}

// roomSub is one room's subscription; sub is nil while it is being set
// up. leave removes it from bot.rooms, which tells a join under way to
// give up.
type roomSub struct {
	sub *client.Subscription
}

// answerState is what the bot has of its answer to one message.
type answerState struct {
	replied, reacted bool
}

// op returns a context for one step of the bot: bounded by opTimeout,
// ended when the bot stops.
func (b *bot) op() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, opTimeout)
}

// retry runs fn until it succeeds or the bot stops, backing off between
// attempts; it reports whether fn succeeded.
func (b *bot) retry(what string, fn func() error) bool {
	wait := retryMin
	for {
		err := fn()
		if err == nil {
			return true
		}
		if b.ctx.Err() != nil {
			return false
		}
		b.log.Warn(what+": retrying", "in", wait, "err", err)
		select {
		case <-b.ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// catchUp accepts the pending invitations (those made while the bot was
// down, whose events may have expired), then joins every room the bot
// belongs to and forgets the cursors of the others.
func (b *bot) catchUp() error {
	ctx, cancel := b.op()
	defer cancel()
	invs, err := b.conn.Invitations(ctx)
	if err != nil {
		return fmt.Errorf("list invitations: %w", err)
	}
	for _, inv := range invs {
		b.accept(inv)
	}
	refs, err := b.conn.ListMyRooms(ctx)
	if err != nil {
		return fmt.Errorf("list rooms: %w", err)
	}
	b.mu.Lock()
	for roomID := range b.cur.Rooms {
		if !slices.ContainsFunc(refs, func(r client.RoomRef) bool { return r.RoomID == roomID }) {
			delete(b.cur.Rooms, roomID)
		}
	}
	b.mu.Unlock()
	for _, r := range refs {
		b.joinOrRetry(r.RoomID)
	}
	return nil
}

// accept accepts inv when its owner is one the bot accepts from, and
// joins the room; other invitations stay pending, logged once.
func (b *bot) accept(inv client.Invitation) {
	if b.acceptFrom != nil && !b.acceptFrom[inv.Owner] {
		b.mu.Lock()
		logged := b.ignored[inv.RoomID]
		b.ignored[inv.RoomID] = true
		b.mu.Unlock()
		if !logged {
			b.log.Info("invitation left pending: its owner is not in --accept-from", "room", inv.RoomID, "owner", inv.Owner)
		}
		return
	}
	ctx, cancel := b.op()
	defer cancel()
	if _, err := b.conn.Accept(ctx, inv.RoomID); err != nil {
		b.log.Warn("accept invitation", "room", inv.RoomID, "owner", inv.Owner, "err", err)
		return
	}
	b.log.Info("accepted invitation", "room", inv.RoomID, "owner", inv.Owner)
	b.joinOrRetry(inv.RoomID)
}

// event handles one of the bot's events, then saves its position. Events
// are notices: the bot acts on what the control plane says (its
// invitations, its rooms), so an old or forged event does no harm.
func (b *bot) event(ev subjects.Event) {
	switch ev.Type {
	case subjects.EventInvited:
		b.invited(ev.RoomID)
	case subjects.EventRemoved:
		b.removed(ev.RoomID)
	case subjects.EventRevoked:
		b.log.Error("the bot was revoked: the bus will refuse it", "by", ev.By)
	}
	if b.ctx.Err() != nil {
		return // stopping: handle it again next time
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ev.Seq > b.cur.Events {
		b.cur.Events = ev.Seq
		b.saveLocked()
	}
}

// invited accepts the pending invitation to roomID, if there is one and
// its owner is one the bot accepts from. It lists the invitations until
// it can (or the bot stops): the events after this one wait.
func (b *bot) invited(roomID string) {
	var invs []client.Invitation
	if !b.retry("list invitations", func() error {
		ctx, cancel := b.op()
		defer cancel()
		var err error
		invs, err = b.conn.Invitations(ctx)
		return err
	}) {
		return
	}
	i := slices.IndexFunc(invs, func(inv client.Invitation) bool { return inv.RoomID == roomID })
	if i < 0 {
		return // answered already (an old event), or withdrawn
	}
	b.accept(invs[i])
}

// removed leaves roomID unless the bot is (again) one of its members.
func (b *bot) removed(roomID string) {
	ctx, cancel := b.op()
	refs, err := b.conn.ListMyRooms(ctx)
	cancel()
	if err == nil && slices.ContainsFunc(refs, func(r client.RoomRef) bool { return r.RoomID == roomID }) {
		return // an old event: the bot was invited back
	}
	if err != nil {
		b.log.Warn("list rooms", "err", err)
	}
	b.leave(roomID)
}

// joinOrRetry joins roomID, or keeps trying in the background until it
// does, the room is not the bot's (any more) or the bot stops.
func (b *bot) joinOrRetry(roomID string) {
	err := b.join(roomID)
	if err == nil || b.ctx.Err() != nil || b.notMember(roomID, err) {
		return
	}
	b.log.Warn("join room: retrying", "room", roomID, "err", err)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	b.wg.Go(func() {
		b.retry("join room "+roomID, func() error {
			if err := b.join(roomID); err != nil && !b.notMember(roomID, err) {
				return err
			}
			return nil
		})
	})
}

// notMember reports (and logs) a join that failed because the bot is not
// a member of roomID: removed meanwhile, or the room is gone. Retrying
// would not help; an invitation back comes as an event.
func (b *bot) notMember(roomID string, err error) bool {
	if !errors.Is(err, client.ErrForbidden) && !errors.Is(err, client.ErrNotFound) {
		return false
	}
	b.log.Warn("not joining room: not a member", "room", roomID, "err", err)
	return true
}

// join subscribes to roomID from the message after the cursor's (from
// the first message the bot may see when it has no cursor there: those
// sent between its invitation and its start are answered too), once the
// answers it gave there since are known.
func (b *bot) join(roomID string) error {
	ctx, cancel := b.op()
	defer cancel()
	rs := &roomSub{}
	b.mu.Lock()
	if b.stopped || b.rooms[roomID] != nil {
		b.mu.Unlock()
		return nil
	}
	b.rooms[roomID] = rs
	from := b.cur.Rooms[roomID] + 1
	b.mu.Unlock()
	release := func() {
		b.mu.Lock()
		if b.rooms[roomID] == rs {
			delete(b.rooms, roomID)
		}
		b.mu.Unlock()
	}
	if err := b.scanAnswers(ctx, roomID, from); err != nil {
		release()
		return err
	}
	sub, err := b.conn.Subscribe(ctx, roomID,
		func(m client.Message) { b.handle(roomID, m) },
		func(err error) { b.log.Warn("dropped a frame", "room", roomID, "err", err) },
		client.FromSeq(from))
	if err != nil {
		release()
		return fmt.Errorf("subscribe: %w", err)
	}
	b.mu.Lock()
	if b.stopped || b.rooms[roomID] != rs { // left, or stopping, meanwhile
		b.mu.Unlock()
		_ = sub.Unsubscribe()
		return nil
	}
	rs.sub = sub
	b.mu.Unlock()
	b.log.Info("joined room", "room", roomID, "from", from)
	return nil
}

// scanAnswers reads roomID's log from seq from to its end and notes the
// answers of the bot's own in it: those it gave before a crash, after the
// last message its cursor records. The messages they answer come again
// and are not answered twice.
func (b *bot) scanAnswers(ctx context.Context, roomID string, from uint64) error {
	q := client.HistoryQuery{From: from, Limit: subjects.MaxHistoryLimit}
	for first := true; ; first = false {
		page, err := b.conn.History(ctx, roomID, q)
		if err != nil {
			return fmt.Errorf("read history: %w", err)
		}
		if first {
			if page.LastSeq == 0 {
				return nil
			}
			q.Until = page.LastSeq
		}
		for _, err := range page.Rejected {
			b.log.Warn("dropped a frame", "room", roomID, "err", err)
		}
		b.mu.Lock()
		for _, m := range page.Messages {
			b.noteOwnLocked(m)
		}
		b.mu.Unlock()
		if page.Next == 0 {
			return nil
		}
		q.From = page.Next
	}
}

// noteOwnLocked records m when it is a part of one of the bot's answers;
// b.mu is held.
func (b *bot) noteOwnLocked(m client.Message) {
	if m.Sender != b.self || m.ReplyTo == "" {
		return
	}
	st := b.answers[m.ReplyTo]
	switch m.Type {
	case e2e.TypeMsg:
		st.replied = true
	case e2e.TypeReact:
		st.reacted = true
	default:
		return
	}
	b.answers[m.ReplyTo] = st
}

// leave unsubscribes from roomID and forgets its cursor.
func (b *bot) leave(roomID string) {
	b.mu.Lock()
	rs := b.rooms[roomID]
	delete(b.rooms, roomID)
	if _, ok := b.cur.Rooms[roomID]; ok {
		delete(b.cur.Rooms, roomID)
		b.saveLocked()
	}
	b.mu.Unlock()
	if rs == nil {
		return
	}
	// Outside b.mu: Unsubscribe waits for the room's handler, which takes
	// it.
	if rs.sub != nil {
		_ = rs.sub.Unsubscribe()
	}
	b.log.Info("left room", "room", roomID)
}

// handle processes one message of roomID: it runs on the room's
// subscription, one message at a time and in the room's order.
func (b *bot) handle(roomID string, m client.Message) {
	b.mu.Lock()
	seen := m.Seq != 0 && m.Seq <= b.cur.Rooms[roomID]
	own := m.Sender == b.self
	if own {
		b.noteOwnLocked(m)
		if m.Type == e2e.TypeReact {
			delete(b.answers, m.ReplyTo) // the answer's last part
		}
	}
	st := b.answers[m.ID]
	b.mu.Unlock()
	if seen {
		return
	}
	// Only messages from others that start a conversation: not the bot's
	// own, not reactions, and not replies. Every answer is a reply, so two
	// bots in one room never answer each other: answering replies made two
	// copies of this bot exchange 4,955 messages in 5 seconds.
	if own || m.Type != e2e.TypeMsg || m.ReplyTo != "" {
		b.advance(roomID, m.Seq, false)
		return
	}
	if st.replied && st.reacted {
		b.log.Debug("answered before", "room", roomID, "msg", m.ID, "seq", m.Seq)
		b.advance(roomID, m.Seq, true)
		return
	}
	if err := b.answer(roomID, m, st); err != nil {
		if b.ctx.Err() != nil {
			return // stopping: the message comes again at the next start
		}
		b.log.Warn("answer", "room", roomID, "msg", m.ID, "err", err)
	}
	b.advance(roomID, m.Seq, true)
}

// answer is the bot's behaviour: change it to write your own bot. It
// answers m in its thread ("echo: <text>") and reacts with 👀, each at most
// once: st says what of it was sent already (before a crash). It runs on
// the room's subscription, so a slow answer delays the room's next
// message; hand long work to goroutines of your own (and wait for them
// when Run returns).
func (b *bot) answer(roomID string, m client.Message, st answerState) error {
	var err error
	for attempt := range answerAttempts {
		if attempt > 0 {
			// The last attempt may have been stored without its
			// acknowledgement reaching the bot: look before sending again.
			ctx, cancel := b.op()
			err := b.scanAnswers(ctx, roomID, m.Seq+1)
			cancel()
			if err != nil {
				return err
			}
			b.mu.Lock()
			st = b.answers[m.ID]
			b.mu.Unlock()
		}
		if st.replied && st.reacted {
			return nil
		}
		if err = b.answerOnce(roomID, m, st); err == nil || b.ctx.Err() != nil || errors.Is(err, client.ErrForbidden) {
			return err
		}
	}
	return err
}

// answerOnce sends what of the answer st says is missing.
func (b *bot) answerOnce(roomID string, m client.Message, st answerState) error {
	ctx, cancel := context.WithTimeout(b.ctx, replyTimeout)
	defer cancel()
	if !st.replied {
		if _, err := b.conn.PublishReply(ctx, roomID, m.ID, []byte("echo: "+string(m.Data))); err != nil {
			return fmt.Errorf("reply: %w", err)
		}
		st.replied = true
		b.mu.Lock()
		b.answers[m.ID] = st
		b.mu.Unlock()
	}
	if !st.reacted {
		if _, err := b.conn.React(ctx, roomID, m.ID, "👀"); err != nil {
			return fmt.Errorf("react: %w", err)
		}
		st.reacted = true
		b.mu.Lock()
		b.answers[m.ID] = st
		b.mu.Unlock()
	}
	b.log.Info("answered", "room", roomID, "msg", m.ID, "seq", m.Seq, "sender", m.Sender)
	return nil
}

// advance moves roomID's cursor to seq (0: a room that keeps no history,
// nothing to move) and, when save, writes the cursor file.
func (b *bot) advance(roomID string, seq uint64, save bool) {
	if seq == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rooms[roomID] == nil || seq <= b.cur.Rooms[roomID] {
		return // left meanwhile, or behind
	}
	b.cur.Rooms[roomID] = seq
	if save {
		b.saveLocked()
	}
}

// saveLocked writes the cursor file; b.mu is held. A failure is logged:
// the bot carries on, and a restart does more work, not wrong work.
func (b *bot) saveLocked() {
	if err := b.cur.save(b.cursorFile); err != nil {
		b.log.Warn("save cursor", "err", err)
	}
}

// stop unsubscribes from every room, waits for the goroutines retrying
// joins and saves the cursor. Unsubscribe waits for the subscription's
// goroutines, so no handler runs after it returns.
func (b *bot) stop() {
	b.mu.Lock()
	b.stopped = true
	var subs []*client.Subscription
	for _, rs := range b.rooms {
		if rs.sub != nil {
			subs = append(subs, rs.sub)
		}
	}
	b.mu.Unlock()
	// The handlers may still advance the cursor until Unsubscribe returns.
	for _, sub := range subs {
		_ = sub.Unsubscribe()
	}
	b.wg.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.saveLocked()
}
