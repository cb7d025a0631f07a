package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
	"github.com/unibus/unibus/tests/testio"
)

// parseSent reads what send and react print: "ID SEQ", or "ID" alone in
// a room that keeps no history (seq 0).
func parseSent(t *testing.T, stdout string) (id string, seq uint64) {
	t.Helper()
	fields := strings.Fields(stdout)
	switch len(fields) {
	case 1:
		return fields[0], 0
	case 2:
		seq, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			t.Fatalf("send printed %q: the seq is not a number: %v", stdout, err)
		}
		return fields[0], seq
	}
	t.Fatalf("send printed %q, want \"ID SEQ\" on one line", stdout)
	return "", 0
}

// jsonLines parses JSON lines of listen --json or history --json.
func jsonLines(t *testing.T, out string) []messageJSON {
	t.Helper()
	var msgs []messageJSON
	for line := range strings.Lines(out) {
		var m messageJSON
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("a line that is not JSON: %q: %v", line, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// texts are the texts of msgs, for comparisons.
func texts(msgs []messageJSON) string {
	s := make([]string, len(msgs))
	for i, m := range msgs {
		s[i] = m.Text
	}
	return strings.Join(s, "|")
}

// TestHistoryAndStartPoints: send prints the seq with the ID; history
// prints the stored messages oldest first, as lines and JSON lines, from
// each start point, bounded by --limit; listen starts at the same points
// and goes on with new messages.
func TestHistoryAndStartPoints(t *testing.T) {
	n := nodetest.Run(t)
	url, dir := n.ClientURL(), t.TempDir()
	alice := newChatPeer(t, n, url, dir, "alice")
	bob := newChatPeer(t, n, url, dir, "bob")
	carol := newChatPeer(t, n, url, dir, "carol")
	room := chatRoomFor(t, "ops", alice, bob)
	c := cli{server: url}

	// An empty room has no history.
	if r := c.run(t, bob.seed, "history", "ops"); r.code != exitcode.OK || r.stdout != "" {
		t.Fatalf("history of an empty room: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	var ids []string
	var seqs []uint64
	sent := func(seed string, args ...string) {
		t.Helper()
		r := c.run(t, seed, args...)
		if r.code != exitcode.OK {
			t.Fatalf("%v: code %d, stderr %q", args, r.code, r.stderr)
		}
		id, seq := parseSent(t, r.stdout)
		if len(id) != 43 || seq == 0 {
			t.Fatalf("%v printed %q, want a message ID and its seq", args, r.stdout)
		}
		if len(seqs) > 0 && seq <= seqs[len(seqs)-1] {
			t.Fatalf("%v: seq %d after %d", args, seq, seqs[len(seqs)-1])
		}
		ids, seqs = append(ids, id), append(seqs, seq)
	}
	for i := range 3 {
		sent(alice.seed, "send", "ops", fmt.Sprintf("msg %d", i))
	}
	sent(bob.seed, "send", "--reply-to", ids[0], "ops", "on it")
	sent(bob.seed, "react", "ops", ids[0], "👍")
	all := "msg 0|msg 1|msg 2|on it|👍"

	// Lines: seq and date first, replies and reactions marked as listen
	// marks them.
	r := c.run(t, bob.seed, "history", "ops")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != exitcode.OK || len(lines) != 5 {
		t.Fatalf("history: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	date := time.Now().Format(time.DateOnly)
	if want := fmt.Sprintf("%d %s ", seqs[0], date); !strings.HasPrefix(lines[0], want) ||
		!strings.Contains(lines[0], short(alice.id.PublicKey())+": msg 0  [id "+ids[0]+"]") {
		t.Fatalf("first line %q, want %q, the sender, text and ID", lines[0], want)
	}
	if !strings.HasPrefix(lines[3], strconv.FormatUint(seqs[3], 10)+" ") || !strings.Contains(lines[3], "↳ "+short(ids[0])+": on it") {
		t.Fatalf("reply line %q", lines[3])
	}
	if !strings.Contains(lines[4], short(bob.id.PublicKey())+" reacted 👍 to "+short(ids[0])) {
		t.Fatalf("reaction line %q", lines[4])
	}

	// JSON lines carry the seq and the fields of listen --json.
	r = c.run(t, bob.seed, "history", "ops", "--json")
	msgs := jsonLines(t, r.stdout)
	if r.code != exitcode.OK || texts(msgs) != all {
		t.Fatalf("history --json: code %d, texts %q, stderr %q", r.code, texts(msgs), r.stderr)
	}
	for i, m := range msgs {
		if m.Seq != seqs[i] || m.ID != ids[i] || m.Room != room.RoomID || time.Since(m.Time) > time.Minute {
			t.Fatalf("message %d: %+v, want seq %d, ID %s", i, m, seqs[i], ids[i])
		}
	}
	if m := msgs[3]; m.Type != "MSG" || m.ReplyTo != ids[0] || m.Thread != ids[0] || m.Sender != bob.id.PublicKey() {
		t.Fatalf("reply %+v", m)
	}
	if m := msgs[4]; m.Type != "REACT" || m.ReplyTo != ids[0] {
		t.Fatalf("reaction %+v", m)
	}

	// Start points and --limit.
	justNow := time.Now().UTC().Format(time.RFC3339Nano)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--last", "2"}, "on it|👍"},
		{[]string{"--last", "10"}, all},
		{[]string{"--last", "3", "--limit", "1"}, "👍"},
		{[]string{"--from", strconv.FormatUint(seqs[1], 10)}, "msg 1|msg 2|on it|👍"},
		{[]string{"--from", strconv.FormatUint(seqs[1], 10), "--limit", "2"}, "msg 1|msg 2"},
		{[]string{"--from", strconv.FormatUint(seqs[4]+1, 10)}, ""},
		{[]string{"--limit", "2"}, "msg 0|msg 1"},
		{[]string{"--since", "1h"}, all},
		{[]string{"--since", date}, all},
		{[]string{"--since", justNow}, ""},
	} {
		r := c.run(t, bob.seed, append([]string{"history", room.RoomID, "--json"}, tc.args...)...)
		if got := texts(jsonLines(t, r.stdout)); r.code != exitcode.OK || got != tc.want {
			t.Errorf("history %v: code %d, texts %q, want %q; stderr %q", tc.args, r.code, got, tc.want, r.stderr)
		}
	}

	// Pages: the command pages through the log, forwards and backwards.
	for _, tc := range []struct {
		cmd  historyCommand
		want string
	}{
		{historyCommand{}, all},
		{historyCommand{Limit: 4}, "msg 0|msg 1|msg 2|on it"},
		{historyCommand{Start: startFlags{Last: 4}}, "msg 1|msg 2|on it|👍"},
		{historyCommand{Start: startFlags{Last: 9}}, all},
		{historyCommand{Start: startFlags{From: seqs[1]}, Limit: 3}, "msg 1|msg 2|on it"},
	} {
		var out, errOut testio.Buffer
		cmd := tc.cmd
		cmd.app = &app{Stdout: &out, Stderr: &errOut, IdentityFile: bob.seed, Server: url, Timeout: 30 * time.Second}
		cmd.JSON, cmd.pageSize = true, 2
		err := cmd.Run(context.Background(), []string{"ops"})
		_ = cmd.app.Close()
		if got := texts(jsonLines(t, out.String())); err != nil || got != tc.want {
			t.Errorf("pages of 2, %+v: %v, texts %q, want %q; stderr %q", tc.cmd.Start, err, got, tc.want, errOut.String())
		}
	}

	// listen from a start point: the stored messages, then new ones.
	got := listenWhile(t, c, bob.seed, []string{"listen", "ops", "--json", "--last", "2", "--count", "3"}, func() {
		sent(alice.seed, "send", "ops", "live")
	})
	if texts(got) != "on it|👍|live" || got[2].Seq != seqs[5] || got[0].Seq != seqs[3] {
		t.Fatalf("listen --last 2: %+v", got)
	}
	r = c.run(t, bob.seed, "listen", "ops", "--json", "--from", strconv.FormatUint(seqs[2], 10), "--count", "4")
	if got := texts(jsonLines(t, r.stdout)); r.code != exitcode.OK || got != "msg 2|on it|👍|live" {
		t.Fatalf("listen --from: code %d, texts %q, stderr %q", r.code, got, r.stderr)
	}
	r = c.run(t, bob.seed, "listen", "ops", "--json", "--since", "1h", "--count", "6")
	if got := texts(jsonLines(t, r.stdout)); r.code != exitcode.OK || got != all+"|live" {
		t.Fatalf("listen --since: code %d, texts %q, stderr %q", r.code, got, r.stderr)
	}

	// Not a member, no such room.
	if r := c.run(t, carol.seed, "history", "--", room.RoomID); r.code != exitcode.Refused || r.stdout != "" {
		t.Fatalf("history by a non-member: code %d, want %d; stdout %q, stderr %q", r.code, exitcode.Refused, r.stdout, r.stderr)
	}
	if r := c.run(t, bob.seed, "history", "no-such-room"); r.code != exitcode.NotFound || !strings.Contains(r.stderr, "none of your rooms") {
		t.Fatalf("history of no room: code %d, stderr %q", r.code, r.stderr)
	}

	// A room that keeps no history: send prints the ID alone, and there
	// is nothing to read back.
	r = c.run(t, alice.seed, "rooms", "create", "scratch", "--history", "none")
	scratch := strings.TrimSpace(r.stdout)
	if r.code != exitcode.OK || scratch == "" {
		t.Fatalf("rooms create --history none: code %d, stderr %q", r.code, r.stderr)
	}
	r = c.run(t, alice.seed, "rooms", "list", "--json")
	var rooms []roomJSON
	if err := json.Unmarshal([]byte(r.stdout), &rooms); err != nil {
		t.Fatalf("rooms list --json %q: %v", r.stdout, err)
	}
	for _, rm := range rooms {
		want := subjects.HistoryKeep
		if rm.RoomID == scratch {
			want = subjects.HistoryNone
		}
		if rm.History != want {
			t.Fatalf("room %s (%s): history %q, want %q", rm.RoomID, rm.Name, rm.History, want)
		}
	}
	r = c.run(t, alice.seed, "send", "scratch", "gone")
	if id, seq := parseSent(t, r.stdout); r.code != exitcode.OK || len(id) != 43 || seq != 0 {
		t.Fatalf("send to a room without history: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := c.run(t, alice.seed, "history", "scratch", "--last", "5"); r.code != exitcode.OK || r.stdout != "" {
		t.Fatalf("history of a room without history: code %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// The start-point flags: one at most, each well formed.
func TestStartFlags(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		flags startFlags
		want  startPoint
		err   string
	}{
		{"none", startFlags{}, startPoint{}, ""},
		{"last", startFlags{Last: 5}, startPoint{last: 5}, ""},
		{"from", startFlags{From: 42}, startPoint{from: 42}, ""},
		{"since a duration", startFlags{Since: "90m"}, startPoint{since: now.Add(-90 * time.Minute)}, ""},
		{"since days", startFlags{Since: "2d"}, startPoint{since: now.Add(-48 * time.Hour)}, ""},
		{"since a time", startFlags{Since: "2026-03-04T10:30:00Z"}, startPoint{since: time.Date(2026, 3, 4, 10, 30, 0, 0, time.UTC)}, ""},
		{"since a date", startFlags{Since: "2026-03-01"}, startPoint{since: time.Date(2026, 3, 1, 0, 0, 0, 0, time.Local)}, ""},
		{"two", startFlags{Last: 1, From: 2}, startPoint{}, "--last and --from are mutually exclusive"},
		{"three", startFlags{Last: 1, Since: "1h", From: 2}, startPoint{}, "--last and --since and --from are mutually exclusive"},
		{"negative last", startFlags{Last: -1}, startPoint{}, "--last must be positive"},
		{"negative duration", startFlags{Since: "-1h"}, startPoint{}, "must be positive"},
		{"future", startFlags{Since: "2026-03-05T00:00:00Z"}, startPoint{}, "in the future"},
		{"garbage", startFlags{Since: "yesterday"}, startPoint{}, "want a duration back from now"},
		{"bad days", startFlags{Since: "xd"}, startPoint{}, "want a duration back from now"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.flags.parse(now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || exitcode.Of(err) != exitcode.Usage {
					t.Fatalf("error %v (code %d), want a usage error saying %q", err, exitcode.Of(err), tc.err)
				}
				return
			}
			if err != nil || got.last != tc.want.last || got.from != tc.want.from || !got.since.Equal(tc.want.since) {
				t.Fatalf("parse = %+v, %v; want %+v", got, err, tc.want)
			}
			if got.zero() != (len(got.subscribeOptions()) == 0) {
				t.Fatalf("%+v: zero %v but %d subscribe options", got, got.zero(), len(got.subscribeOptions()))
			}
		})
	}
}
