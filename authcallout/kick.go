package authcallout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/subjects"
)

// System account subjects used to find and disconnect connections.
const (
	connzPingSubject = "$SYS.REQ.SERVER.PING.CONNZ"
	kickSubjectFmt   = "$SYS.REQ.SERVER.%s.KICK"
)

// Kicker disconnects a user's connections on every server of the cluster
// through the system account.
type Kicker struct {
	// Conn is a connection of a system-account user.
	Conn *nats.Conn
	// Quiet is how long to wait for more CONNZ answers after the last one
	// (default 100ms); answers stop at the context's deadline in any case.
	Quiet time.Duration
}

type connzReply struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Data struct {
		Conns []struct {
			Cid   uint64    `json:"cid"`
			Start time.Time `json:"start"`
		} `json:"connections"`
	} `json:"data"`
	Error *struct {
		Description string `json:"description"`
	} `json:"error"`
}

// Kick disconnects every connection of user pub that started before
// `before` (connections made later already carry current permissions), on
// every server that answers, and returns how many it disconnected.
func (k *Kicker) Kick(ctx context.Context, pub string, before time.Time) (int, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Second)
		defer cancel()
	}
	quiet := k.Quiet
	if quiet == 0 {
		quiet = 100 * time.Millisecond
	}
	req, err := json.Marshal(map[string]any{"user": pub, "limit": 4096})
	if err != nil {
		return 0, fmt.Errorf("kick %s: %w", pub, err)
	}
	inbox := k.Conn.NewRespInbox()
	sub, err := k.Conn.SubscribeSync(inbox)
	if err != nil {
		return 0, fmt.Errorf("kick %s: %w", pub, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := k.Conn.PublishRequest(connzPingSubject, inbox, req); err != nil {
		return 0, fmt.Errorf("kick %s: list connections: %w", pub, err)
	}
	kicked := 0
	var errs []error
	answered := false
	for {
		wait := ctx
		var cancel context.CancelFunc = func() {}
		if answered {
			wait, cancel = context.WithTimeout(ctx, quiet)
		}
		msg, err := sub.NextMsgWithContext(wait)
		cancel()
		if err != nil {
			if answered && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				break // quiet: every server has answered
			}
			if !answered {
				return 0, fmt.Errorf("kick %s: no server answered: %w", pub, err)
			}
			break
		}
		answered = true
		var reply connzReply
		if err := json.Unmarshal(msg.Data, &reply); err != nil {
			errs = append(errs, fmt.Errorf("decode connz: %w", err))
			continue
		}
		if reply.Error != nil {
			errs = append(errs, fmt.Errorf("connz on %s: %s", reply.Server.ID, reply.Error.Description))
			continue
		}
		// The kick subject is built from the answer: a server ID must be
		// one plain token, never a wildcard or a path elsewhere.
		if err := subjects.ValidateToken(reply.Server.ID); err != nil {
			errs = append(errs, fmt.Errorf("connz: server id: %w", err))
			continue
		}
		for _, c := range reply.Data.Conns {
			if !c.Start.Before(before) {
				continue
			}
			body, _ := json.Marshal(map[string]uint64{"cid": c.Cid})
			if _, err := k.Conn.RequestWithContext(ctx, fmt.Sprintf(kickSubjectFmt, reply.Server.ID), body); err != nil {
				errs = append(errs, fmt.Errorf("kick cid %d on %s: %w", c.Cid, reply.Server.ID, err))
				continue
			}
			kicked++
		}
	}
	if len(errs) > 0 {
		return kicked, fmt.Errorf("kick %s: %w", pub, errors.Join(errs...))
	}
	return kicked, nil
}
