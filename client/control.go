package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/identity"
	"github.com/unibus/unibus/subjects"
)

// DefaultRequestTimeout bounds a control-plane request when the context
// has no deadline.
const DefaultRequestTimeout = 10 * time.Second

// signer adapts an identity to subjects.Signer.
type signer struct{ id *identity.Identity }

func (s signer) PublicKey() (string, error)      { return s.id.PublicKey(), nil }
func (s signer) Sign(msg []byte) ([]byte, error) { return s.id.Sign(msg) }

// reconnectGrace is how long a request in flight when the connection
// comes back may still get its reply before it is sent again.
const reconnectGrace = 250 * time.Millisecond

// maxRateLimitedRetries bounds how many times in a row call waits out a
// 429 and retries.
const maxRateLimitedRetries = 5

// call sends a signed request to subject and decodes the reply into resp
// (when not nil). Service errors come back as *APIError.
//
// A connection may drop and come back (a server restarts, a network
// fails); a reply sent while it was away is lost. So a
// request that sees the connection come back and gets no reply within
// reconnectGrace is signed again (new nonce) and sent once more. A write
// that did land the first time may then answer ErrConflict.
//
// A request refused with 429 (ErrTooManyRequests) was not processed: call
// waits for the service's retry hint and sends it again (signed anew), up
// to maxRateLimitedRetries times, as long as ctx's deadline leaves room
// for the wait; otherwise the *APIError, with its RetryAfter, is returned.
func (c *Conn) call(ctx context.Context, subject string, req, resp any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	var body []byte
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return fmt.Errorf("%s: encode request: %w", subject, err)
		}
	}
	for limited := 0; ; limited++ {
		err := c.callOnce(ctx, subject, body, resp)
		var api *APIError
		if !errors.As(err, &api) || api.Code != subjects.CodeTooManyRequests || limited == maxRateLimitedRetries || !waitRetry(ctx, api.RetryAfter) {
			return err
		}
	}
}

// waitRetry waits d (at least a millisecond) unless ctx's deadline is
// nearer; it reports whether it waited.
func waitRetry(ctx context.Context, d time.Duration) bool {
	d = max(d, time.Millisecond)
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= d {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// callOnce is call without the retries of a 429.
func (c *Conn) callOnce(ctx context.Context, subject string, body []byte, resp any) error {
	var msg *nats.Msg
	for attempt := 0; ; attempt++ {
		var retry bool
		var err error
		msg, retry, err = c.requestOnce(ctx, subject, body)
		if err == nil {
			break
		}
		if retry && attempt == 0 {
			continue
		}
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("%s: %w: no service instance answers", subject, ErrUnavailable)
		}
		return fmt.Errorf("%s: %w", subject, err)
	}
	if err := replyError(subject, msg); err != nil {
		return err
	}
	if resp != nil {
		if err := json.Unmarshal(msg.Data, resp); err != nil {
			return fmt.Errorf("%s: decode reply: %w", subject, err)
		}
	}
	return nil
}

// retryAfter reads the retry hint of an error reply: the
// subjects.HeaderRetryAfter header, or else the body's retry_after_ms.
func retryAfter(msg *nats.Msg) time.Duration {
	ms, err := strconv.ParseInt(msg.Header.Get(subjects.HeaderRetryAfter), 10, 64)
	if err != nil {
		var body subjects.ErrorBody
		if json.Unmarshal(msg.Data, &body) != nil {
			return 0
		}
		ms = body.RetryAfterMs
	}
	if ms <= 0 || ms > int64(time.Hour/time.Millisecond) {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// requestOnce signs and sends one attempt. retry reports that the
// connection came back during the attempt and the reply did not follow.
func (c *Conn) requestOnce(ctx context.Context, subject string, body []byte) (*nats.Msg, bool, error) {
	h, err := subjects.SignRequest(signer{c.id}, subject, body, time.Now())
	if err != nil {
		return nil, false, err
	}
	attempt, cancel := context.WithCancel(ctx)
	defer cancel()
	var reconnected atomic.Bool
	back := c.reconnects.wait()
	go func() {
		select {
		case <-back:
		case <-attempt.Done():
			return
		}
		select {
		case <-time.After(reconnectGrace):
			reconnected.Store(true)
			cancel()
		case <-attempt.Done():
		}
	}()
	msg, err := c.nc.RequestMsgWithContext(attempt, &nats.Msg{Subject: subject, Header: h, Data: body})
	if err != nil && reconnected.Load() && ctx.Err() == nil {
		return nil, true, err
	}
	return msg, false, err
}

// AddUser allowlists a user (admins only).
func (c *Conn) AddUser(ctx context.Context, pub, name string, admin bool) (subjects.UserInfo, error) {
	var u subjects.UserInfo
	err := c.call(ctx, subjects.UsersAdd, subjects.AddUserRequest{Pub: pub, Name: name, Admin: admin}, &u)
	return u, err
}

// GetUser returns a user's record, including its encryption key.
func (c *Conn) GetUser(ctx context.Context, pub string) (subjects.UserInfo, error) {
	var u subjects.UserInfo
	err := c.call(ctx, subjects.UsersGet, subjects.GetUserRequest{Pub: pub}, &u)
	return u, err
}

// ListUsers lists every user, in order of their keys (admins only), page
// after page of subjects.MaxListUsersLimit.
func (c *Conn) ListUsers(ctx context.Context) ([]subjects.UserInfo, error) {
	var all []subjects.UserInfo
	after := ""
	for {
		page, next, err := c.ListUsersPage(ctx, after, subjects.MaxListUsersLimit)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		if next <= after {
			return nil, fmt.Errorf("list users: the next page (after %s) does not follow the last (after %s)", next, after)
		}
		after = next
	}
}

// ListUsersPage lists at most limit users whose keys sort after after (""
// for the first page; limit 0 for the service's default), and the after of
// the next page, "" when there is none (admins only).
func (c *Conn) ListUsersPage(ctx context.Context, after string, limit int) ([]subjects.UserInfo, string, error) {
	var r subjects.ListUsersResponse
	if err := c.call(ctx, subjects.UsersList, subjects.ListUsersRequest{After: after, Limit: limit}, &r); err != nil {
		return nil, "", err
	}
	return r.Users, r.Next, nil
}

// RevokeUser revokes a user (admins only); its connections are closed.
func (c *Conn) RevokeUser(ctx context.Context, pub string) (subjects.UserInfo, error) {
	var u subjects.UserInfo
	err := c.call(ctx, subjects.UsersRevoke, subjects.RevokeUserRequest{Pub: pub}, &u)
	return u, err
}

// GetRoom returns a room the caller belongs to, once checked: its owner is
// the one its ID names (subjects.CheckRoomOwner), its owner and mode are
// those this client knew, and its epoch is not below one whose key this
// client holds from the owner. A room that fails is refused with
// ErrUntrustedRoom or ErrEpochRollback, and the client keeps what it knew.
func (c *Conn) GetRoom(ctx context.Context, roomID string) (subjects.RoomInfo, error) {
	info, err := c.getRoom(ctx, roomID)
	if err != nil {
		return subjects.RoomInfo{}, err
	}
	if err := c.keys.learn(info); err != nil {
		return subjects.RoomInfo{}, err
	}
	return info, nil
}

// getRoom asks for a room's state, unchecked.
func (c *Conn) getRoom(ctx context.Context, roomID string) (subjects.RoomInfo, error) {
	var r subjects.RoomInfo
	err := c.call(ctx, subjects.RoomsGet, subjects.RoomRequest{RoomID: roomID}, &r)
	return r, err
}

// Members lists the members of a room the caller belongs to, as the
// service reports them, followed by its pending invitees (role
// subjects.RoleInvited), to whom a rekey seals too. In an encrypted room
// each carries the owner's key grant of the current epoch, which only the
// owner (who holds the room key) can check; Rekey and Remove do.
func (c *Conn) Members(ctx context.Context, roomID string) ([]subjects.MemberInfo, error) {
	var r subjects.MembersResponse
	err := c.call(ctx, subjects.RoomsMembers, subjects.MembersRequest{RoomID: roomID}, &r)
	return r.Members, err
}

// isMember asks the service whether pub is a current member of a room,
// without fetching the whole list.
func (c *Conn) isMember(ctx context.Context, roomID, pub string) (bool, error) {
	var r subjects.MembersResponse
	if err := c.call(ctx, subjects.RoomsMembers, subjects.MembersRequest{RoomID: roomID, Pub: pub}, &r); err != nil {
		return false, err
	}
	for _, m := range r.Members {
		if m.Pub == pub {
			return true, nil
		}
	}
	return false, nil
}

// RoomRef is a room the caller belongs to, as ListMyRooms reports it.
type RoomRef = subjects.RoomRef

// ListMyRooms lists the rooms the caller belongs to (empty for none);
// pending invitations are not among them (see Invitations).
func (c *Conn) ListMyRooms(ctx context.Context) ([]RoomRef, error) {
	var r subjects.MineResponse
	if err := c.call(ctx, subjects.RoomsMine, nil, &r); err != nil {
		return nil, err
	}
	if r.Rooms == nil {
		r.Rooms = []RoomRef{}
	}
	return r.Rooms, nil
}

// Leave leaves a room (the owner cannot leave its room).
func (c *Conn) Leave(ctx context.Context, roomID string) error {
	if err := c.call(ctx, subjects.RoomsLeave, subjects.RoomRequest{RoomID: roomID}, nil); err != nil {
		return err
	}
	c.keys.forget(roomID)
	return nil
}

// RoomKey returns the caller's sealed room key of a room for epoch (0: the
// current epoch), as stored by the service; the client opens it with its
// encryption key. A member without a key for that epoch gets ErrForbidden.
func (c *Conn) RoomKey(ctx context.Context, roomID string, epoch uint64) (subjects.KeyResponse, error) {
	var r subjects.KeyResponse
	err := c.call(ctx, subjects.RoomsKey, subjects.KeyRequest{RoomID: roomID, Epoch: epoch}, &r)
	return r, err
}
