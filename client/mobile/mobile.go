// Package mobile is the unibus client for mobile apps, shaped for gomobile
// (gobind): every exported signature uses only types gomobile binds
// (string, bool, int64, []byte, error, pointers to exported structs and
// interfaces of such methods).
//
// A Session is one identity's connection to the bus. It has no context
// parameters: each method bounds its network work with Timeout. A Session
// is safe for concurrent use; Close ends every subscription.
//
// Room and invitation lists are returned as JSON (RoomsJSON,
// InvitationsJSON), since gomobile cannot bind slices of structs. Incoming messages are delivered to a MessageHandler,
// which the app implements (in Java/Kotlin or Objective-C/Swift).
//
// A plaintext url (nats://) is allowed only on loopback, unless the app
// opts in with NewInsecureSession on a network it trusts.
//
//	s, err := mobile.NewSession("tls://bus.example:4222", seedPath, caPath)
//	room, err := s.CreateRoom("ops")
//	err = s.Invite(room, friendPublicKey) // the friend calls Accept(room)
//	err = s.Subscribe(room, handler)
//	id, err := s.Send(room, "hello")
package mobile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	s.mu.Unlock()
	var errs []error
	for _, sub := range subs {
		if sub != nil {
			errs = append(errs, sub.Unsubscribe())
		}
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

// Send sends text to the room and returns the message ID.
func (s *Session) Send(roomID, text string) (string, error) {
	ctx, cancel, err := s.op()
	if err != nil {
		return "", err
	}
	defer cancel()
	id, err := s.conn.Publish(ctx, roomID, []byte(text))
	return id, s.done(err)
}

// Reply answers message parentID in its thread and returns the reply's ID.
func (s *Session) Reply(roomID, parentID, text string) (string, error) {
	if parentID == "" {
		return "", errors.New("reply: the parent message ID is empty")
	}
	ctx, cancel, err := s.op()
	if err != nil {
		return "", err
	}
	defer cancel()
	id, err := s.conn.PublishReply(ctx, roomID, parentID, []byte(text))
	return id, s.done(err)
}

// React reacts to message targetID with emoji and returns the reaction's
// message ID.
func (s *Session) React(roomID, targetID, emoji string) (string, error) {
	if targetID == "" {
		return "", errors.New("react: the target message ID is empty")
	}
	ctx, cancel, err := s.op()
	if err != nil {
		return "", err
	}
	defer cancel()
	id, err := s.conn.React(ctx, roomID, targetID, emoji)
	return id, s.done(err)
}

// Subscribe delivers the room's messages to h until Unsubscribe or Close.
// A room has at most one subscription per Session. Right after an invite
// the subscription may miss messages until the bus refreshes the member's
// permissions (it is restored then, without action).
func (s *Session) Subscribe(roomID string, h MessageHandler) error {
	if h == nil {
		return errors.New("subscribe: the message handler is nil")
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
		func(err error) { h.OnError(roomID, err.Error()) })

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
	}
}
