package main

import (
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestSignForNatsReq calls the users service the way the README shows with
// the nats CLI: a plain NATS request whose headers come from `unibus sign`.
// The signature opens exactly one request: the same headers again are a
// replay, and another body does not verify.
func TestSignForNatsReq(t *testing.T) {
	n := nodetest.Run(t)
	adminID := nodetest.AddUser(t, n, "admin", true)
	nodetest.AddUser(t, n, "alice", false)
	admin := saveIdentity(t, t.TempDir(), "admin", adminID)
	nc, err := nats.Connect(n.ClientURL(), nodetest.ConnectOptions(adminID)...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := cli{}

	body := `{"limit":1}`
	r := c.run(t, admin, "sign", subjects.UsersList, body)
	if r.code != exitcode.OK {
		t.Fatalf("sign: code %d, stderr %q", r.code, r.stderr)
	}
	h := headersFromFlags(t, r.stdout)
	if h.Get(subjects.HeaderPub) != adminID.PublicKey() {
		t.Fatalf("signed as %q, want %s", h.Get(subjects.HeaderPub), adminID.PublicKey())
	}
	request := func(body string, h nats.Header) *nats.Msg {
		t.Helper()
		msg := nats.NewMsg(subjects.UsersList)
		msg.Data, msg.Header = []byte(body), h
		reply, err := nc.RequestMsg(msg, 5*time.Second)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		return reply
	}
	reply := request(body, h)
	var page subjects.ListUsersResponse
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" || json.Unmarshal(reply.Data, &page) != nil || len(page.Users) != 1 || page.Next == "" {
		t.Fatalf("signed request: code %q (%s), reply %s; want one user and a next page", code, reply.Header.Get(micro.ErrorHeader), reply.Data)
	}
	if code := request(body, h).Header.Get(micro.ErrorCodeHeader); code != strconv.Itoa(subjects.CodeUnauthenticated) {
		t.Fatalf("the same headers again: code %q, want a 401 replay", code)
	}

	// --json, with the body from standard input; signed for one body, sent
	// with another, it does not verify.
	var out, errOut strings.Builder
	code := c.runTo(t, &out, &errOut, strings.NewReader(body), admin, "sign", "--json", subjects.UsersList, "-")
	var fields map[string]string
	if code != exitcode.OK || json.Unmarshal([]byte(out.String()), &fields) != nil || len(fields) != 4 {
		t.Fatalf("sign --json: code %d, stdout %q, stderr %q; want an object of 4 headers", code, out.String(), errOut.String())
	}
	h = nats.Header{}
	for k, v := range fields {
		h.Set(k, v)
	}
	reply = request(`{"limit":2}`, h)
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != strconv.Itoa(subjects.CodeUnauthenticated) {
		t.Fatalf("headers of another body: code %q (%s), want 401", code, reply.Header.Get(micro.ErrorHeader))
	}
	reply = request(body, h)
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("sign --json with the body on stdin: code %q (%s)", code, reply.Header.Get(micro.ErrorHeader))
	}
}

func TestSignUsageErrors(t *testing.T) {
	dir := t.TempDir()
	id := saveIdentity(t, dir, "me", nodetest.NewIdentity(t))
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sign"}, exitcode.Usage, "missing arguments"},
		{[]string{"sign", "a", "b", "c"}, exitcode.Usage, "too many arguments"},
		{[]string{"sign", "unibus.v1.*.list"}, exitcode.Usage, "subject"},
		{[]string{"sign", "unibus..list"}, exitcode.Usage, "empty"},
		{[]string{"sign", "unibus.v1 users"}, exitcode.Usage, "subject"},
	} {
		if r := (cli{}).run(t, id, tc.args...); r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: code %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
	missing := filepath.Join(dir, "missing.nk")
	if r := (cli{}).run(t, missing, "sign", subjects.RoomsMine); r.code == exitcode.OK || !strings.Contains(r.stderr, "keygen") {
		t.Errorf("sign without an identity file: code %d, stderr %q; want a failure naming keygen", r.code, r.stderr)
	}
}

// headersFromFlags reads the "-H Name:Value" flags sign prints.
func headersFromFlags(t *testing.T, line string) nats.Header {
	t.Helper()
	fields := strings.Fields(line)
	if len(fields) != 8 {
		t.Fatalf("sign printed %q, want 4 -H flags", line)
	}
	h := nats.Header{}
	for i := 0; i < len(fields); i += 2 {
		name, value, ok := strings.Cut(fields[i+1], ":")
		if fields[i] != "-H" || !ok {
			t.Fatalf("sign printed %q, want -H Name:Value pairs", line)
		}
		h.Set(name, value)
	}
	return h
}
