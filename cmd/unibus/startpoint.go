package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/unibus/unibus/client"
)

// startFlags are the start-point flags shared by listen and history:
// where in a room's log to begin. At most one may be given.
type startFlags struct {
	// Last, when positive, starts with the last Last messages.
	Last int
	// Since, when set, starts with the first message stored at or after
	// it: a duration back from now ("90m", "1h", "2d") or an RFC 3339 time
	// ("2026-01-02T15:04:05Z", or a local date "2026-01-02").
	Since string
	// From, when positive, starts at that room-log sequence.
	From uint64
}

// register adds --last, --since and --from to cmd; the flags given as 0
// (--last 0, --from 0) are usage errors, checked before Run.
func (f *startFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.IntVar(&f.Last, "last", 0, "start with the last `N` messages")
	fs.StringVar(&f.Since, "since", "", "start with the messages stored since `TIME`: a duration back from now (90m, 1h, 2d), an RFC 3339 time or a date")
	fs.Uint64Var(&f.From, "from", 0, "start at room-log sequence `SEQ` (as printed by send, history, listen --json)")
	cmd.PreRunE = func(c *cobra.Command, _ []string) error {
		var err error
		for _, name := range []string{"last", "from"} {
			if c.Flags().Changed(name) && c.Flags().Lookup(name).Value.String() == "0" {
				err = fmt.Errorf("--%s must be positive, got 0", name)
			}
		}
		if c.Flags().Changed("since") && f.Since == "" {
			err = errors.New("--since is empty: give a duration (1h) or a time (RFC 3339)")
		}
		if err != nil {
			return &usageError{cmd: c.CommandPath(), err: err}
		}
		return nil
	}
}

// startPoint is a parsed start point; the zero value is "new messages
// only" (listen) or "from the first message you may see" (history).
type startPoint struct {
	last  int
	since time.Time
	from  uint64
}

// zero reports whether no start point was given.
func (p startPoint) zero() bool { return p.last == 0 && p.since.IsZero() && p.from == 0 }

// parse checks the flags (one at most, each well-formed) against the
// clock now.
func (f *startFlags) parse(now time.Time) (startPoint, error) {
	var set []string
	if f.Last != 0 {
		set = append(set, "--last")
	}
	if f.Since != "" {
		set = append(set, "--since")
	}
	if f.From != 0 {
		set = append(set, "--from")
	}
	if len(set) > 1 {
		return startPoint{}, usagef("%s are mutually exclusive: give one start point", strings.Join(set, " and "))
	}
	if f.Last < 0 {
		return startPoint{}, usagef("--last must be positive, got %d", f.Last)
	}
	p := startPoint{last: f.Last, from: f.From}
	if f.Since != "" {
		t, err := parseSince(f.Since, now)
		if err != nil {
			return startPoint{}, err
		}
		p.since = t
	}
	return p, nil
}

// parseSince reads --since: a positive duration back from now (Go's
// syntax, plus whole days: "2d"), an RFC 3339 time, or a date (midnight,
// local time). A time in the future is a usage error.
func parseSince(s string, now time.Time) (time.Time, error) {
	var t time.Time
	if d, err := parseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, usagef("--since %q: the duration must be positive", s)
		}
		t = now.Add(-d)
	} else if ts, err := time.Parse(time.RFC3339Nano, s); err == nil {
		t = ts
	} else if ts, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		t = ts
	} else {
		return time.Time{}, usagef("--since %q: want a duration back from now (90m, 1h, 2d) or a time (2006-01-02T15:04:05Z07:00, or a date 2006-01-02)", s)
	}
	if t.After(now) {
		return time.Time{}, usagef("--since %q is in the future", s)
	}
	return t, nil
}

// parseDuration is time.ParseDuration that also takes whole days, "2d".
func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("parse days %q: %w", s, err)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// subscribeOptions are the client's options for p: none for "new only".
func (p startPoint) subscribeOptions() []client.SubscribeOption {
	switch {
	case p.last > 0:
		return []client.SubscribeOption{client.Last(p.last)}
	case !p.since.IsZero():
		return []client.SubscribeOption{client.Since(p.since)}
	case p.from > 0:
		return []client.SubscribeOption{client.FromSeq(p.from)}
	}
	return nil
}
