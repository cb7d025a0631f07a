package authcallout

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/subjects"
)

// System account subjects used to find and disconnect connections: CONNZ
// on every server (PING) or on one (by its ID), and KICK on one server.
const (
	connzPingSubject   = "$SYS.REQ.SERVER.PING.CONNZ"
	connzServerSubject = "$SYS.REQ.SERVER.%s.CONNZ"
	kickSubjectFmt     = "$SYS.REQ.SERVER.%s.KICK"
)

// Defaults of Kicker.
const (
	// DefaultKickQuiet is how long a listing waits for more servers'
	// answers after the last one.
	DefaultKickQuiet = 100 * time.Millisecond
	// DefaultKickPageSize is how many connections one CONNZ answer lists:
	// nats-server's own default page (server.DefaultConnListSize), some
	// 400 KB of JSON.
	DefaultKickPageSize = 1024
	// DefaultKickBackoff is the first pause between two passes of
	// Disconnect; it doubles up to maxKickBackoff.
	DefaultKickBackoff = 50 * time.Millisecond
	// maxKickBackoff caps the pause between two passes of Disconnect.
	maxKickBackoff = time.Second
	// maxListedServers bounds the CONNZ answers one listing collects.
	maxListedServers = 1024
	// passTimeout bounds a Kick whose context has no deadline.
	passTimeout = 5 * time.Second
)

// errConnectionsRemain means a Disconnect ended (its context did) while
// connections it was asked to close may still be open.
var errConnectionsRemain = errors.New("connections may remain")

// Kicker disconnects a user's connections on every server of the cluster
// through the system account: it lists them with CONNZ, every page of
// them on every server, and closes each with KICK. The zero values of its
// tuning fields take their defaults. It is safe for concurrent use.
type Kicker struct {
	// Conn is a connection of a system-account user.
	Conn *nats.Conn
	// Quiet is how long a listing waits for more servers' answers after
	// the last one (DefaultKickQuiet); answers stop at the context's
	// deadline in any case. Servers that do not answer are not waited
	// for: a server that is down holds no connections.
	Quiet time.Duration
	// PageSize is how many connections one CONNZ answer lists
	// (DefaultKickPageSize); a server with more is asked for the next
	// pages.
	PageSize int
	// Backoff is the first pause between two passes of Disconnect
	// (DefaultKickBackoff); it doubles up to a second.
	Backoff time.Duration
}

// KickReport says what a Kick or a Disconnect did.
type KickReport struct {
	// Passes counts the listings made.
	Passes int
	// Servers is how many servers answered the last listing.
	Servers int
	// Found is how many connections to close the last listing showed
	// (zero once Disconnect has succeeded).
	Found int
	// Remaining is how many of those its kicks did not confirm closed:
	// zero after a Disconnect that returns nil.
	Remaining int
	// Kicked counts the connections closed, over every pass.
	Kicked int
	// Failed counts the kicks not confirmed, over every pass: no answer,
	// or an error (a connection that closed meanwhile is one). A later
	// pass lists again whatever is still open.
	Failed int
	// paged: a server's connections took more than one page (which a
	// connection closing meanwhile may shift).
	paged bool
}

// connzRequest is nats-server's ConnzEventOptions, as far as used here.
type connzRequest struct {
	User    string `json:"user"`
	Account string `json:"acc"`
	Sort    string `json:"sort"`
	Offset  int    `json:"offset,omitempty"`
	Limit   int    `json:"limit"`
}

// connzReply is nats-server's ServerAPIResponse carrying a Connz, as far
// as used here.
type connzReply struct {
	Server struct {
		ID string `json:"id"`
	} `json:"server"`
	Data struct {
		Now   time.Time `json:"now"`
		Conns []struct {
			Cid   uint64    `json:"cid"`
			Start time.Time `json:"start"`
		} `json:"connections"`
	} `json:"data"`
	Error *struct {
		Description string `json:"description"`
	} `json:"error"`
}

// page is one CONNZ answer and when its request was sent.
type page struct {
	reply  connzReply
	sentAt time.Time
}

func (k *Kicker) quiet() time.Duration   { return cmp.Or(k.Quiet, DefaultKickQuiet) }
func (k *Kicker) pageSize() int          { return cmp.Or(k.PageSize, DefaultKickPageSize) }
func (k *Kicker) backoff() time.Duration { return cmp.Or(k.Backoff, DefaultKickBackoff) }

// Kick is one pass: it lists the connections of user pub on every server
// that answers, every page of them, and closes those that started before
// `before`, or every one when before is zero. (A connection that starts
// later already carries the current permissions.) Each server's
// connections are closed as soon as its answer arrives, while the pass
// still waits (Quiet) for other servers to answer. Start times are on the
// servers' clocks, so the cut-off is moved by each server's clock offset
// as its answer shows it, over-estimated by the request's transit time:
// that may close a connection made a few milliseconds after the change,
// and never spares an older one. Without a deadline in ctx, the pass is
// bounded by five seconds.
func (k *Kicker) Kick(ctx context.Context, pub string, before time.Time) (KickReport, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, passTimeout)
		defer cancel()
	}
	rep := KickReport{Passes: 1}
	var errs []error
	seen := map[string]bool{}
	err := k.ping(ctx, pub, func(first page) {
		id := first.reply.Server.ID
		// The kick subject is built from the answer: a server ID must be
		// one plain token, never a wildcard or a path elsewhere.
		if err := subjects.ValidateToken(id); err != nil {
			errs = append(errs, fmt.Errorf("connz: server id: %w", err))
			return
		}
		if first.reply.Error != nil {
			errs = append(errs, fmt.Errorf("connz on %s: %s", id, first.reply.Error.Description))
			return
		}
		if seen[id] {
			return
		}
		seen[id] = true
		pages, err := k.nextPages(ctx, id, pub, first)
		errs = append(errs, err)
		rep.paged = rep.paged || len(pages) > 1
		var cids []uint64
		for _, p := range pages {
			cut := before
			if !before.IsZero() && !p.reply.Data.Now.IsZero() {
				cut = before.Add(p.reply.Data.Now.Sub(p.sentAt))
			}
			for _, c := range p.reply.Data.Conns {
				if before.IsZero() || c.Start.Before(cut) {
					cids = append(cids, c.Cid)
				}
			}
		}
		kicked, err := k.kickAll(ctx, id, cids)
		rep.Found += len(cids)
		rep.Kicked += kicked
		rep.Failed += len(cids) - kicked
		errs = append(errs, err)
	})
	rep.Servers = len(seen)
	rep.Remaining = rep.Found - rep.Kicked
	if err := errors.Join(append(errs, err)...); err != nil {
		return rep, fmt.Errorf("kick %s: %w", pub, err)
	}
	return rep, nil
}

// Disconnect runs passes (Kick) until one lists no connection to close
// on any server that answers, pausing between passes (Backoff, doubling
// up to a second), and returns nil then. With a cut-off, a pass that read
// every server's connections in one page and closed all it found is
// enough: no connection that started before the cut-off can appear later.
// Without one (a revocation), connections being admitted while the pass
// ran are looked for by another pass. When ctx ends first, it returns
// an error and the report says how many connections the last listing
// showed and its kicks did not close. Give ctx a deadline, or cancel it:
// Disconnect retries until then.
func (k *Kicker) Disconnect(ctx context.Context, pub string, before time.Time) (KickReport, error) {
	var total KickReport
	pause := k.backoff()
	for {
		rep, err := k.Kick(ctx, pub, before)
		total.Passes++
		total.Kicked += rep.Kicked
		total.Failed += rep.Failed
		if rep.Servers > 0 || err == nil {
			total.Servers, total.Found, total.Remaining = rep.Servers, rep.Found, rep.Remaining
		}
		if err == nil && (rep.Found == 0 || !before.IsZero() && !rep.paged && rep.Remaining == 0) {
			total.Found, total.Remaining = 0, 0
			return total, nil
		}
		timer := time.NewTimer(pause)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return total, fmt.Errorf("disconnect %s: %w (%d listed last, %d of them not closed): %w",
				pub, errConnectionsRemain, total.Found, total.Remaining, cmp.Or(err, ctx.Err()))
		}
		pause = min(2*pause, maxKickBackoff)
	}
}

// nextPages returns first, a server's answer, followed by the next pages
// of that server while the last one read is full. Connections are sorted
// by ID, so new ones join the end; one closing meanwhile may shift another
// past a page boundary, which the next pass finds. A page that could not
// be read cuts the list short, and the error says so.
func (k *Kicker) nextPages(ctx context.Context, id, pub string, first page) ([]page, error) {
	limit := k.pageSize()
	pages := []page{first}
	for offset := limit; len(pages[len(pages)-1].reply.Data.Conns) >= limit; offset += limit {
		next, err := k.connz(ctx, id, pub, offset, limit)
		if err != nil {
			return pages, err
		}
		pages = append(pages, next)
	}
	return pages, nil
}

// connzBody is the CONNZ request for one page of pub's connections.
func connzBody(pub string, offset, limit int) ([]byte, error) {
	body, err := json.Marshal(connzRequest{User: pub, Account: AccountUnibus, Sort: "cid", Offset: offset, Limit: limit})
	if err != nil {
		return nil, fmt.Errorf("encode connz request: %w", err)
	}
	return body, nil
}

// ping asks every server for the first page of pub's connections and
// hands each answer to handle as it arrives, until none has come for
// Quiet after the last one was handled. It fails when ctx ends first: no
// server may have answered, or not all of them.
func (k *Kicker) ping(ctx context.Context, pub string, handle func(page)) error {
	body, err := connzBody(pub, 0, k.pageSize())
	if err != nil {
		return err
	}
	inbox := k.Conn.NewRespInbox()
	answers := make(chan *nats.Msg, maxListedServers)
	sub, err := k.Conn.ChanSubscribe(inbox, answers)
	if err != nil {
		return fmt.Errorf("list connections: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	sentAt := time.Now()
	if err := k.Conn.PublishRequest(connzPingSubject, inbox, body); err != nil {
		return fmt.Errorf("list connections: %w", err)
	}
	var errs []error
	answered := 0
	quiet := time.NewTimer(time.Hour)
	defer quiet.Stop()
	var wait <-chan time.Time // nil until the first answer
	for answered < maxListedServers {
		select {
		case msg := <-answers:
			answered++
			p := page{sentAt: sentAt}
			if err := json.Unmarshal(msg.Data, &p.reply); err != nil {
				errs = append(errs, fmt.Errorf("decode connz: %w", err))
			} else {
				handle(p)
			}
			quiet.Reset(k.quiet())
			wait = quiet.C
		case <-wait:
			return errors.Join(errs...)
		case <-ctx.Done():
			if answered == 0 {
				return fmt.Errorf("list connections: no server answered: %w", ctx.Err())
			}
			// Others may not have answered yet: the listing is not known
			// to be complete.
			return errors.Join(append(errs, fmt.Errorf("list connections: cut short after %d answers: %w", answered, ctx.Err()))...)
		}
	}
	return errors.Join(errs...)
}

// connz asks server id for one page of pub's connections.
func (k *Kicker) connz(ctx context.Context, id, pub string, offset, limit int) (page, error) {
	body, err := connzBody(pub, offset, limit)
	if err != nil {
		return page{}, err
	}
	p := page{sentAt: time.Now()}
	msg, err := k.Conn.RequestWithContext(ctx, fmt.Sprintf(connzServerSubject, id), body)
	if err != nil {
		return page{}, fmt.Errorf("connz on %s at %d: %w", id, offset, err)
	}
	if err := json.Unmarshal(msg.Data, &p.reply); err != nil {
		return page{}, fmt.Errorf("connz on %s at %d: decode: %w", id, offset, err)
	}
	if p.reply.Error != nil {
		return page{}, fmt.Errorf("connz on %s at %d: %s", id, offset, p.reply.Error.Description)
	}
	return p, nil
}

// kickAll closes connections cids of server id, a page at a time: the
// kicks of a page are sent at once and their answers then collected (one
// round trip a page, not one a connection). It returns how many the
// server confirmed, and an error naming the first failure.
func (k *Kicker) kickAll(ctx context.Context, id string, cids []uint64) (int, error) {
	subject := fmt.Sprintf(kickSubjectFmt, id)
	kicked, failed := 0, 0
	var first error
	for start := 0; start < len(cids); start += k.pageSize() {
		batch := cids[start:min(start+k.pageSize(), len(cids))]
		ok, err := k.kickBatch(ctx, subject, batch)
		kicked += ok
		if ok < len(batch) {
			failed += len(batch) - ok
			first = cmp.Or(first, err)
		}
	}
	if failed > 0 {
		return kicked, fmt.Errorf("%d kicks on %s not confirmed: %w", failed, id, cmp.Or(first, errors.New("no reason given")))
	}
	return kicked, nil
}

// kickBatch sends one KICK per connection and counts the confirmations.
func (k *Kicker) kickBatch(ctx context.Context, subject string, cids []uint64) (int, error) {
	inbox := k.Conn.NewRespInbox()
	answers := make(chan *nats.Msg, len(cids))
	sub, err := k.Conn.ChanSubscribe(inbox, answers)
	if err != nil {
		return 0, fmt.Errorf("kick: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	sent := 0
	var first error
	for _, cid := range cids {
		body, err := json.Marshal(struct {
			CID uint64 `json:"cid"`
		}{cid})
		if err == nil {
			err = k.Conn.PublishRequest(subject, inbox, body)
		}
		if err != nil {
			first = cmp.Or(first, fmt.Errorf("kick cid %d: %w", cid, err))
			continue
		}
		sent++
	}
	kicked := 0
	for received := 0; received < sent; received++ {
		select {
		case msg := <-answers:
			var reply struct {
				Error *struct {
					Description string `json:"description"`
				} `json:"error"`
			}
			switch err := json.Unmarshal(msg.Data, &reply); {
			case err != nil:
				first = cmp.Or(first, fmt.Errorf("decode kick answer: %w", err))
			case reply.Error != nil:
				first = cmp.Or(first, fmt.Errorf("kick: %s", reply.Error.Description))
			default:
				kicked++
			}
		case <-ctx.Done():
			return kicked, cmp.Or(first, fmt.Errorf("kick: %d of %d unanswered: %w", sent-received, sent, ctx.Err()))
		}
	}
	return kicked, first
}
