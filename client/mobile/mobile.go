// Package mobile is the unibus client for mobile apps, shaped for gomobile
// (gobind): every exported signature uses only types gomobile binds
// (string, bool, int64, []byte, error, pointers to exported structs and
// interfaces of such methods).
//
// A Session is one identity's connection to the bus. It has no context
// parameters: each method bounds its network work with Timeout. A Session
// is safe for concurrent use; Close ends every subscription.
//
// Room and invitation lists and history pages are returned as JSON
// (RoomsJSON, InvitationsJSON, HistoryJSON), since gomobile cannot bind
// slices of structs. Incoming messages are delivered to a MessageHandler,
// and the identity's events (invitations, removals, rekeys, revocation) to
// an EventHandler, both of which the app implements (in Java/Kotlin or
// Objective-C/Swift).
//
// Rooms keep a durable log of their frames: Send returns once the message
// is stored, with its sequence in the room log (Sent.Seq), and every
// Message carries its Seq. An app that keeps the last Seq it showed (or
// Position) resumes after it with SubscribeFrom(room, h, seq+1, 0, 0):
// nothing is missed or delivered twice, across reconnections too. A phone
// follows its events the same way (WatchEvents, EventsPosition), with no
// polling.
//
// A plaintext url (nats://) is allowed only on loopback, unless the app
// opts in with NewInsecureSession on a network it trusts.
//
//	s, err := mobile.NewSession("tls://bus.example:4222", seedPath, caPath)
//	room, err := s.CreateRoom("ops")
//	err = s.Invite(room, friendPublicKey) // the friend calls Accept(room)
//	err = s.SubscribeFrom(room, handler, 0, 0, 50) // the last 50, then new ones
//	sent, err := s.Send(room, "hello")              // sent.ID, sent.Seq
//	err = s.WatchEvents(0, eventHandler)
package mobile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/client/e2e"
	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// Timeout bounds the network work of each Session method, in milliseconds.
const Timeout = 15000

const timeout = Timeout * time.Millisecond

// Message types (Message.Type).
const (
	TypeMsg   = e2e.TypeMsg
	TypeReact = e2e.TypeReact
)

// ErrClosed is returned by the methods of a closed Session.
var ErrClosed = errors.New("unibus session is closed")

// Message is a verified (and, in an encrypted room, decrypted) message.
type Message struct {
	// ID is the message ID.
	ID string
	// Room is the room ID.
	Room string
	// Sender is the sender's public key.
	Sender string
	// Type is TypeMsg for a message or reply, TypeReact for a reaction.
	Type string
	// Thread is the thread's root message ID; empty outside threads.
	Thread string
	// ReplyTo is the message this one answers or reacts to; empty if none.
	ReplyTo string
	// Text is the message text, or the emoji of a reaction.
	Text string
	// TimeUnixMs is the sender's timestamp, in milliseconds since the Unix
	// epoch.
	TimeUnixMs int64
	// Epoch is the room key epoch the message was sealed with (0 in
	// cleartext rooms).
	Epoch int64
	// Seq is the message's sequence in the room log (0 in a room that
	// keeps no history): resume after it with SubscribeFrom(room, h,
	// Seq+1, 0, 0).
	Seq int64
}

// Sent is a message the room accepted.
type Sent struct {
	// ID is the message ID.
	ID string
	// Seq is its sequence in the room log: it is stored. 0 in a room that
	// keeps no history (it was delivered, not stored).
	Seq int64
}

// EventHandler receives the session identity's events, one at a time and
// in order, on a goroutine of the session, as JSON:
//
//	{"seq": 17, "type": "invited" | "removed" | "rekeyed" | "revoked",
//	 "room_id": "...", "by": "U...", "epoch": 2, "time": "RFC 3339"}
//
// (room_id, by and epoch when they apply). Events are notices: act on one
// by asking the bus (InvitationsJSON, RoomsJSON), which is what counts. A
// handler must not call StopEvents or Close synchronously: both wait for
// delivery to end.
type EventHandler interface {
	OnEvent(eventJSON string)
}

// MessageHandler receives a subscription's messages, one at a time and in
// arrival order, on a goroutine of the subscription. OnError reports a frame
// that was rejected (bad signature, not a member, replay, undecryptable);
// such frames never reach OnMessage. A handler must not call Unsubscribe
// or Close for its own room synchronously: both wait for delivery to end.
type MessageHandler interface {
	OnMessage(m *Message)
	OnError(roomID string, err string)
}

// Session is one identity's connection to the bus.
type Session struct {
	conn *client.Conn
	id   *identity.Identity
	pub  string

	mu     sync.Mutex
	closed bool
	// subs holds the room subscriptions; a nil value is a Subscribe in
	// progress.
	subs map[string]*client.Subscription
	// events is the events subscription, if any; eventsStarting is true
	// while WatchEvents sets it up.
	events         *client.EventSubscription
	eventsStarting bool
}

// NewSession loads the identity seed at seedPath, connects to the bus at
// url and registers the identity's encryption key, kept beside the seed
// (seedPath + ".enc", created on first use with mode 0600). caPath is the
// PEM file of the CA the server's certificate must chain to; with a CA the
// url must be tls://. An empty caPath uses the system's roots for tls://
// urls; a plaintext url (nats://) is allowed only to a loopback address
// (127.0.0.1, ::1, localhost): use NewInsecureSession to allow plaintext
// beyond it.
func NewSession(url, seedPath, caPath string) (*Session, error) {
	return newSession(url, seedPath, caPath, false)
}

// NewInsecureSession is NewSession without a CA, that also allows a
// plaintext url (nats://) to a server beyond loopback. Anyone on the path
// can then read and rewrite the connection and relay its login: use it
// only on a network you trust, never over the internet.
func NewInsecureSession(url, seedPath string) (*Session, error) {
	return newSession(url, seedPath, "", true)
}

func newSession(url, seedPath, caPath string, insecure bool) (*Session, error) {
	if url == "" {
		return nil, errors.New("new session: the bus URL is empty")
	}
	if seedPath == "" {
		return nil, errors.New("new session: the seed path is empty")
	}
	id, err := identity.Load(seedPath)
	if err != nil {
		return nil, fmt.Errorf("new session: %w", err) // names the file
	}
	var opts []client.Option
	if caPath != "" {
		opts = append(opts, client.WithCA(caPath))
	}
	if insecure {
		opts = append(opts, client.WithInsecure())
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := client.Connect(ctx, url, id, opts...)
	if err != nil {
		id.Wipe()
		if errors.Is(err, client.ErrInsecureURL) {
			return nil, fmt.Errorf("new session: %w (mobile: give a tls:// url, or call NewInsecureSession to allow plaintext)", err)
		}
		return nil, fmt.Errorf("new session: %w", err)
	}
	if err := conn.SetEncryptionKey(ctx, client.EncryptionKeyPath(seedPath)); err != nil {
		_ = conn.Close()
		id.Wipe()
		return nil, fmt.Errorf("new session: %w", err)
	}
	return &Session{conn: conn, id: id, pub: id.PublicKey(), subs: make(map[string]*client.Subscription)}, nil
}

// PublicKey is the session identity's public key, which others invite.
func (s *Session) PublicKey() string { return s.pub }

// Close ends every subscription and the connection. Closing a closed
// Session does nothing.
func (s *Session) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	subs := s.subs
	s.subs = nil
	events := s.events
	s.events = nil
	s.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		if sub != nil {
			errs = append(errs, sub.Unsubscribe())
		}
	}
	if events != nil {
		errs = append(errs, events.Stop())
	}
	errs = append(errs, s.conn.Close())
	s.id.Wipe()
	return errors.Join(errs...)
}

// op returns a context bounded by Timeout, or ErrClosed.
func (s *Session) op() (context.Context, context.CancelFunc, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return ctx, cancel, nil
}

// done marks an error of an operation that Close overtook with ErrClosed
// (the connection closed under it).
func (s *Session) done(err error) error {
	if err == nil {
		return nil
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// CreateRoom creates an encrypted room owned by the session's identity and
// returns its ID.
func (s *Session) CreateRoom(name string) (string, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return "", err
	}
	defer cancel()
	info, err := s.conn.CreateRoom(ctx, name, subjects.ModeE2E)
	if err != nil {
		return "", s.done(err)
	}
	return info.RoomID, nil
}

// Invite proposes that the identity with public key pub join the room
// (owner only): it is a member once it accepts (Accept), and until then
// the invitation grants it nothing. It may decline (Decline), and the
// invitation lapses unanswered after seven days by default.
func (s *Session) Invite(roomID, pub string) error {
	ctx, cancel, err := s.op()
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.conn.Invite(ctx, roomID, pub)
	return s.done(err)
}

// Remove removes the member (or withdraws the invitation of) the identity
// with public key pub from the room (owner only); in an encrypted room the
// room is rekeyed in the same request, so pub cannot read what is sent
// after. pub learns it from its events (WatchEvents).
func (s *Session) Remove(roomID, pub string) error {
	ctx, cancel, err := s.op()
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.conn.Remove(ctx, roomID, pub)
	return s.done(err)
}

// InvitationsJSON lists the session identity's pending invitations, each
// checked (its owner is the one its room ID names), as a JSON array
// (never null) of objects:
//
//	{"room_id": "...", "name": "...", "mode": "e2e" | "cleartext",
//	 "owner": "U...", "salt": "...", "epoch": 1,
//	 "invited_at": "RFC 3339", "expires_at": "RFC 3339"}
//
// A name is its owner's choice and may read like another room's: show the
// owner too.
func (s *Session) InvitationsJSON() (string, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return "", err
	}
	defer cancel()
	invs, err := s.conn.Invitations(ctx)
	if err != nil {
		return "", s.done(err)
	}
	b, err := json.Marshal(invs)
	if err != nil {
		return "", fmt.Errorf("invitations: %w", err)
	}
	return string(b), nil
}

// Accept accepts the session identity's pending invitation to the room:
// it becomes a member, and may subscribe and send once Accept returns.
func (s *Session) Accept(roomID string) error {
	ctx, cancel, err := s.op()
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.conn.Accept(ctx, roomID)
	return s.done(err)
}

// Decline declines the session identity's pending invitation to the room.
func (s *Session) Decline(roomID string) error {
	ctx, cancel, err := s.op()
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.conn.Decline(ctx, roomID)
	return s.done(err)
}

// RoomsJSON lists the rooms the session's identity belongs to, as a JSON
// array (never null) of objects:
//
//	{"room_id": "...", "subject": "...", "epoch": 1, "policy": "none",
//	 "role": "owner" | "member", "mode": "e2e" | "cleartext"}
func (s *Session) RoomsJSON() (string, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return "", err
	}
	defer cancel()
	refs, err := s.conn.ListMyRooms(ctx)
	if err != nil {
		return "", s.done(err)
	}
	if refs == nil {
		refs = []client.RoomRef{}
	}
	b, err := json.Marshal(refs)
	if err != nil {
		return "", fmt.Errorf("rooms: %w", err)
	}
	return string(b), nil
}

// Send sends text to the room. It returns once the room stored it, with
// its ID and sequence in the room log.
func (s *Session) Send(roomID, text string) (*Sent, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return nil, err
	}
	defer cancel()
	sent, err := s.conn.Publish(ctx, roomID, []byte(text))
	return toSent(sent, s.done(err))
}

// Reply answers message parentID in its thread, as Send sends.
func (s *Session) Reply(roomID, parentID, text string) (*Sent, error) {
	if parentID == "" {
		return nil, errors.New("reply: the parent message ID is empty")
	}
	ctx, cancel, err := s.op()
	if err != nil {
		return nil, err
	}
	defer cancel()
	sent, err := s.conn.PublishReply(ctx, roomID, parentID, []byte(text))
	return toSent(sent, s.done(err))
}

// React reacts to message targetID with emoji, as Send sends.
func (s *Session) React(roomID, targetID, emoji string) (*Sent, error) {
	if targetID == "" {
		return nil, errors.New("react: the target message ID is empty")
	}
	ctx, cancel, err := s.op()
	if err != nil {
		return nil, err
	}
	defer cancel()
	sent, err := s.conn.React(ctx, roomID, targetID, emoji)
	return toSent(sent, s.done(err))
}

func toSent(sent client.Sent, err error) (*Sent, error) {
	if err != nil {
		return nil, err
	}
	return &Sent{ID: sent.ID, Seq: seqOut(sent.Seq)}, nil
}

// Subscribe delivers the room's new messages to h until Unsubscribe or
// Close: SubscribeFrom(roomID, h, 0, 0, 0).
func (s *Session) Subscribe(roomID string, h MessageHandler) error {
	return s.SubscribeFrom(roomID, h, 0, 0, 0)
}

// SubscribeFrom delivers the room's messages to h from a start point,
// then the new ones as they arrive, in order, with no gap and no
// duplicate (across reconnections too), until Unsubscribe or Close. At
// most one start point is positive:
//
//   - fromSeq: from that room-log sequence on (Message.Seq + 1 of the last
//     message shown resumes after it);
//   - sinceUnixMs: from the first message stored at or after that time, in
//     milliseconds since the Unix epoch;
//   - last: the last that many messages.
//
// All zero: new messages only. Stored messages go back as far as the room
// keeps them, and only to the identity's invitation. A room has at most
// one subscription per Session.
func (s *Session) SubscribeFrom(roomID string, h MessageHandler, fromSeq, sinceUnixMs, last int64) error {
	if h == nil {
		return errors.New("subscribe: the message handler is nil")
	}
	opts, err := startOptions(fromSeq, sinceUnixMs, last)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if _, ok := s.subs[roomID]; ok {
		s.mu.Unlock()
		return fmt.Errorf("subscribe: already subscribed to room %s", roomID)
	}
	s.subs[roomID] = nil // reserved while subscribing
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sub, err := s.conn.Subscribe(ctx, roomID,
		func(m client.Message) { h.OnMessage(toMessage(m)) },
		func(err error) { h.OnError(roomID, err.Error()) },
		opts...)

	s.mu.Lock()
	if err != nil {
		if !s.closed {
			delete(s.subs, roomID)
		}
		s.mu.Unlock()
		return s.done(err)
	}
	if s.closed {
		s.mu.Unlock()
		_ = sub.Unsubscribe()
		return ErrClosed
	}
	s.subs[roomID] = sub
	s.mu.Unlock()
	return nil
}

// Unsubscribe ends the room's subscription and waits for its deliveries to
// end.
func (s *Session) Unsubscribe(roomID string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	sub, ok := s.subs[roomID]
	switch {
	case !ok:
		s.mu.Unlock()
		return fmt.Errorf("unsubscribe: not subscribed to room %s", roomID)
	case sub == nil:
		s.mu.Unlock()
		return fmt.Errorf("unsubscribe: the subscription to room %s is still being set up", roomID)
	}
	delete(s.subs, roomID)
	s.mu.Unlock()
	return sub.Unsubscribe()
}

// startOptions checks a start point (at most one of the three positive,
// none negative) and returns the client's option for it.
func startOptions(fromSeq, sinceUnixMs, last int64) ([]client.SubscribeOption, error) {
	if fromSeq < 0 || sinceUnixMs < 0 || last < 0 {
		return nil, fmt.Errorf("subscribe: negative start point (fromSeq %d, sinceUnixMs %d, last %d)", fromSeq, sinceUnixMs, last)
	}
	n := 0
	for _, v := range []int64{fromSeq, sinceUnixMs, last} {
		if v > 0 {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, fmt.Errorf("subscribe: give one start point, not %d (fromSeq %d, sinceUnixMs %d, last %d)", n, fromSeq, sinceUnixMs, last)
	case fromSeq > 0:
		return []client.SubscribeOption{client.FromSeq(uint64(fromSeq))}, nil
	case sinceUnixMs > 0:
		return []client.SubscribeOption{client.Since(time.UnixMilli(sinceUnixMs))}, nil
	case last > 0:
		if last > math.MaxInt32 {
			return nil, fmt.Errorf("subscribe: last %d is too many", last)
		}
		return []client.SubscribeOption{client.Last(int(last))}, nil
	}
	return nil, nil
}

// Position is the room-log sequence of the last message the room's
// subscription delivered (0 before the first): keep it to resume with
// SubscribeFrom(roomID, h, Position()+1, 0, 0).
func (s *Session) Position(roomID string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	sub, ok := s.subs[roomID]
	if !ok || sub == nil {
		return 0, fmt.Errorf("position: not subscribed to room %s", roomID)
	}
	return seqOut(sub.Position()), nil
}

// historyJSON is the page HistoryJSON returns.
type historyJSON struct {
	Messages []messageJSON `json:"messages"`
	Rejected []string      `json:"rejected"`
	Next     int64         `json:"next"`
	LastSeq  int64         `json:"last_seq"`
	FirstSeq int64         `json:"first_seq"`
}

// messageJSON is a Message in HistoryJSON.
type messageJSON struct {
	Seq        int64  `json:"seq"`
	ID         string `json:"id"`
	Room       string `json:"room"`
	Sender     string `json:"sender"`
	Type       string `json:"type"`
	Thread     string `json:"thread"`
	ReplyTo    string `json:"reply_to"`
	Text       string `json:"text"`
	TimeUnixMs int64  `json:"time_unix_ms"`
	Epoch      int64  `json:"epoch"`
}

// HistoryJSON reads one page of the room's stored messages, verified and
// decrypted, as JSON:
//
//	{"messages": [{"seq": 1042, "id": "...", "room": "...", "sender": "U...",
//	   "type": "MSG" | "REACT", "thread": "", "reply_to": "", "text": "...",
//	   "time_unix_ms": 1767366245000, "epoch": 1}, ...],
//	 "rejected": ["why a frame was dropped", ...],
//	 "next": 0, "last_seq": 1044, "first_seq": 7}
//
// messages run oldest first. With last positive, the page is the last
// that many messages before seq before (0: the newest): scrolling back
// passes the seq of the oldest message shown. Otherwise the page runs
// forward from fromSeq, or from the first message stored at or after
// sinceUnixMs (both 0: the first message the identity may see); next,
// when not 0, is the fromSeq of the following page. limit bounds the page
// (0: 100; at most 1000). first_seq is the first sequence the identity may
// see, last_seq the room's newest.
func (s *Session) HistoryJSON(roomID string, fromSeq, sinceUnixMs, last, before, limit int64) (string, error) {
	if fromSeq < 0 || sinceUnixMs < 0 || last < 0 || before < 0 || limit < 0 {
		return "", errors.New("history: negative argument")
	}
	if last > math.MaxInt32 || limit > math.MaxInt32 {
		return "", errors.New("history: last or limit too large")
	}
	q := client.HistoryQuery{From: uint64(fromSeq), Last: int(last), Before: uint64(before), Limit: int(limit)}
	if sinceUnixMs > 0 {
		q.Since = time.UnixMilli(sinceUnixMs)
	}
	ctx, cancel, err := s.op()
	if err != nil {
		return "", err
	}
	defer cancel()
	page, err := s.conn.History(ctx, roomID, q)
	if err != nil {
		return "", s.done(err)
	}
	out := historyJSON{
		Messages: make([]messageJSON, 0, len(page.Messages)),
		Rejected: make([]string, 0, len(page.Rejected)),
		Next:     seqOut(page.Next), LastSeq: seqOut(page.LastSeq), FirstSeq: seqOut(page.FirstSeq),
	}
	for _, m := range page.Messages {
		mm := toMessage(m)
		out.Messages = append(out.Messages, messageJSON{
			Seq: mm.Seq, ID: mm.ID, Room: mm.Room, Sender: mm.Sender, Type: mm.Type, Thread: mm.Thread,
			ReplyTo: mm.ReplyTo, Text: mm.Text, TimeUnixMs: mm.TimeUnixMs, Epoch: mm.Epoch,
		})
	}
	for _, err := range page.Rejected {
		out.Rejected = append(out.Rejected, err.Error())
	}
	b, err := json.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("history: %w", err)
	}
	return string(b), nil
}

// WatchEvents delivers the session identity's events to h until
// StopEvents or Close: with fromSeq 0 only new ones; otherwise the stored
// events from that sequence on first (keep EventsPosition and pass it + 1
// to miss nothing while the app was away), then new ones. A Session has
// at most one.
func (s *Session) WatchEvents(fromSeq int64, h EventHandler) error {
	if h == nil {
		return errors.New("watch events: the event handler is nil")
	}
	if fromSeq < 0 {
		return fmt.Errorf("watch events: negative fromSeq %d", fromSeq)
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.events != nil || s.eventsStarting:
		s.mu.Unlock()
		return errors.New("watch events: already watching")
	}
	s.eventsStarting = true
	s.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	events, err := s.conn.Events(ctx, uint64(fromSeq), func(ev subjects.Event) {
		b, err := json.Marshal(ev)
		if err != nil {
			return // an Event always marshals
		}
		h.OnEvent(string(b))
	})

	s.mu.Lock()
	s.eventsStarting = false
	if err != nil {
		s.mu.Unlock()
		return s.done(err)
	}
	if s.closed {
		s.mu.Unlock()
		_ = events.Stop()
		return ErrClosed
	}
	s.events = events
	s.mu.Unlock()
	return nil
}

// StopEvents ends WatchEvents and waits for its deliveries to end.
func (s *Session) StopEvents() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	events := s.events
	s.events = nil
	s.mu.Unlock()
	if events == nil {
		return errors.New("stop events: not watching events")
	}
	return events.Stop()
}

// EventsPosition is the sequence of the last event delivered (0 before
// the first, or when not watching): keep it to resume with
// WatchEvents(EventsPosition()+1, h).
func (s *Session) EventsPosition() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.events == nil {
		return 0
	}
	return seqOut(s.events.Position())
}

// seqOut is a sequence as gomobile's int64 (sequences stay far below
// 2^63).
func seqOut(seq uint64) int64 {
	return int64(min(seq, math.MaxInt64))
}

func toMessage(m client.Message) *Message {
	var ms int64
	if !m.Time.IsZero() {
		ms = m.Time.UnixMilli()
	}
	return &Message{
		ID:         m.ID,
		Room:       m.Room,
		Sender:     m.Sender,
		Type:       m.Type,
		Thread:     m.Thread,
		ReplyTo:    m.ReplyTo,
		Text:       string(m.Data),
		TimeUnixMs: ms,
		Epoch:      int64(m.Epoch),
		Seq:        seqOut(m.Seq),
	}
}
