package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
)

// replyTimeout bounds answering one message.
const replyTimeout = 10 * time.Second

// worker is the bot. Set its fields, then call Run.
type worker struct {
	// IdentityFile is the bot's nkey seed file; its encryption key lives
	// beside it (client.EncryptionKeyPath).
	IdentityFile string
	// Server is the NATS URL; CA, when set, pins TLS to that CA.
	Server, CA string
	// Insecure allows a plaintext Server beyond loopback
	// (client.WithInsecure).
	Insecure bool
	// Poll is how often the bot looks for invitations and rooms.
	Poll time.Duration
	// AcceptFrom, when not empty, are the owners (public keys) whose
	// invitations the bot accepts; the others stay pending. Empty: the
	// bot accepts every invitation.
	AcceptFrom []string
	// Logger receives what the bot does; nil discards it.
	Logger *slog.Logger
}

// Run connects, joins the bot's rooms and answers messages until ctx ends,
// then unsubscribes, closes the connection and returns nil. It returns an
// error only when it cannot start: a bad identity, the bus unreachable or
// refusing the bot.
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
	log.Info("worker started", "pub", id.PublicKey(), "server", w.Server)

	b := &bot{conn: conn, self: id.PublicKey(), log: log, rooms: map[string]*client.Subscription{}, ignored: map[string]bool{}}
	if len(w.AcceptFrom) > 0 {
		b.acceptFrom = map[string]bool{}
		for _, pub := range w.AcceptFrom {
			b.acceptFrom[pub] = true
		}
	}
	defer b.leaveAll()

	poll := w.Poll
	if poll <= 0 {
		poll = 3 * time.Second
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		b.sync(ctx)
		select {
		case <-ctx.Done():
			log.Info("worker stopping")
			return nil
		case <-tick.C:
		}
	}
}

// bot is the state of a running worker: its connection and one
// subscription per room.
type bot struct {
	conn *client.Conn
	self string // the bot's public key
	log  *slog.Logger

	// acceptFrom, when not nil, are the owners whose invitations the bot
	// accepts; ignored the invitations of others it has logged (once).
	acceptFrom map[string]bool
	ignored    map[string]bool

	mu    sync.Mutex
	rooms map[string]*client.Subscription // room ID → subscription
}

// sync accepts the invitations the bot takes (see worker.AcceptFrom),
// subscribes to the rooms it joined since the last poll and drops the
// rooms it was removed from. Errors are logged: the next poll retries.
func (b *bot) sync(runCtx context.Context) {
	ctx, cancel := context.WithTimeout(runCtx, client.DefaultRequestTimeout)
	defer cancel()
	b.acceptInvitations(ctx)
	refs, err := b.conn.ListMyRooms(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("list rooms", "err", err)
		}
		return
	}
	current := map[string]bool{}
	for _, r := range refs {
		current[r.RoomID] = true
		b.mu.Lock()
		_, joined := b.rooms[r.RoomID]
		b.mu.Unlock()
		if joined {
			continue
		}
		roomID := r.RoomID
		sub, err := b.conn.Subscribe(ctx, roomID,
			func(m client.Message) { b.handle(runCtx, roomID, m) },
			func(err error) { b.log.Warn("dropped a frame", "room", roomID, "err", err) })
		if err != nil {
			b.log.Warn("subscribe", "room", roomID, "err", err)
			continue
		}
		b.mu.Lock()
		b.rooms[roomID] = sub
		b.mu.Unlock()
		b.log.Info("joined room", "room", roomID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for roomID, sub := range b.rooms {
		if !current[roomID] {
			_ = sub.Unsubscribe()
			delete(b.rooms, roomID)
			b.log.Info("left room", "room", roomID)
		}
	}
}

// acceptInvitations accepts the pending invitations of the owners the bot
// accepts from (all, by default); the others stay pending, logged once.
func (b *bot) acceptInvitations(ctx context.Context) {
	invs, err := b.conn.Invitations(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("list invitations", "err", err)
		}
		return
	}
	for _, inv := range invs {
		if b.acceptFrom != nil && !b.acceptFrom[inv.Owner] {
			if !b.ignored[inv.RoomID] {
				b.ignored[inv.RoomID] = true
				b.log.Info("invitation left pending: its owner is not in --accept-from", "room", inv.RoomID, "owner", inv.Owner)
			}
			continue
		}
		if _, err := b.conn.Accept(ctx, inv.RoomID); err != nil {
			b.log.Warn("accept invitation", "room", inv.RoomID, "owner", inv.Owner, "err", err)
			continue
		}
		b.log.Info("accepted invitation", "room", inv.RoomID, "owner", inv.Owner)
	}
}

// handle is the bot's behaviour (ctx ends when the worker stops): change it to write your own bot. It runs
// on the subscription's delivery goroutine, one message at a time per room,
// so a slow answer delays the room's next message; hand long work to
// goroutines of your own (and wait for them when Run returns).
func (b *bot) handle(ctx context.Context, roomID string, m client.Message) {
	// Only messages from others that start a conversation: not the bot's
	// own, not reactions, and not replies. Every answer is a reply, so two
	// bots in one room never answer each other: answering replies made two
	// copies of this bot exchange 4,955 messages in 5 seconds.
	if m.Sender == b.self || m.Type != e2e.TypeMsg || m.ReplyTo != "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, replyTimeout)
	defer cancel()
	if _, err := b.conn.PublishReply(ctx, roomID, m.ID, []byte("echo: "+string(m.Data))); err != nil {
		b.log.Warn("reply", "room", roomID, "msg", m.ID, "err", err)
		return
	}
	if _, err := b.conn.React(ctx, roomID, m.ID, "👀"); err != nil {
		b.log.Warn("react", "room", roomID, "msg", m.ID, "err", err)
		return
	}
	b.log.Info("answered", "room", roomID, "msg", m.ID, "sender", m.Sender)
}

// leaveAll unsubscribes from every room; Unsubscribe waits for the
// subscription's goroutines, so no handler runs after it returns.
func (b *bot) leaveAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for roomID, sub := range b.rooms {
		_ = sub.Unsubscribe()
		delete(b.rooms, roomID)
	}
}
