package main

import (
	"strings"
	"testing"

	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/tests/nodetest"
)

// TestRoomNamesCannotBeSquatted replays the reported squatting attack: an
// attacker makes a room that a victim's ROOM argument could also mean
// (the same name, or a name that is the ID of the victim's room) and
// invites the victim. An invitation is a proposal, so until the victim
// accepts it the attacker's room is not among the victim's and ROOM still
// means the victim's own room. Once the victim accepts, its commands must
// refuse to guess, naming both rooms, instead of sending into the
// attacker's room. Invitations resolve the same way.
func TestRoomNamesCannotBeSquatted(t *testing.T) {
	n, ca := nodetest.RunTLS(t)
	c := cli{server: n.ClientURL(), ca: ca}
	dir := t.TempDir()
	victimID := nodetest.AddUser(t, n, "victim", false)
	victim := saveIdentity(t, dir, "victim", victimID)
	attacker := saveIdentity(t, dir, "attacker", nodetest.AddUser(t, n, "attacker", false))
	victimPub := victimID.PublicKey()

	opsID := strings.TrimSpace(c.mustRun(t, victim, "rooms", "create", "ops"))
	if r := c.run(t, victim, "send", "ops", "before"); r.code != exitcode.OK {
		t.Fatalf("send to the victim's only ops: code %d, stderr %q", r.code, r.stderr)
	}

	// Same name: a forced invitation changes nothing the victim's ROOM
	// means.
	fakeOps := strings.TrimSpace(c.mustRun(t, attacker, "rooms", "create", "ops"))
	c.mustRun(t, attacker, "rooms", "invite", fakeOps, victimPub)
	if r := c.run(t, victim, "send", "ops", "still mine"); r.code != exitcode.OK {
		t.Fatalf("send to ops with a pending invitation to another ops: code %d, stderr %q", r.code, r.stderr)
	}
	if list := c.mustRun(t, victim, "rooms", "list"); strings.Contains(list, fakeOps) {
		t.Fatalf("the attacker's room is among the victim's rooms before it accepted:\n%s", list)
	}
	if invs := c.mustRun(t, victim, "rooms", "invitations"); !strings.Contains(invs, fakeOps) || !strings.Contains(invs, attackerPub(t, c, attacker)) {
		t.Fatalf("the victim's invitations do not show the attacker's room and owner:\n%s", invs)
	}
	// Accepted, the name is ambiguous: refused, naming both.
	c.mustRun(t, victim, "rooms", "accept", fakeOps)
	r := c.run(t, victim, "send", "ops", "secret")
	if r.code != exitcode.Usage || !strings.Contains(r.stderr, opsID) || !strings.Contains(r.stderr, fakeOps) {
		t.Fatalf("send to an ambiguous name: code %d, want %d naming %s and %s; stderr %q", r.code, exitcode.Usage, opsID, fakeOps, r.stderr)
	}
	// The victim's own ID still works.
	if r := c.run(t, victim, "send", opsID, "by id"); r.code != exitcode.OK {
		t.Fatalf("send by ID: code %d, stderr %q", r.code, r.stderr)
	}

	// A name that is the ID of the victim's room.
	byIDName := strings.TrimSpace(c.mustRun(t, attacker, "rooms", "create", opsID))
	c.mustRun(t, attacker, "rooms", "invite", byIDName, victimPub)
	if r := c.run(t, victim, "send", opsID, "still by id"); r.code != exitcode.OK {
		t.Fatalf("send by ID with a pending invitation to a room named so: code %d, stderr %q", r.code, r.stderr)
	}
	// Among the invitations that name is the attacker's room alone, so
	// accepting by it works; afterwards the ID is ambiguous among the
	// victim's rooms.
	c.mustRun(t, victim, "rooms", "accept", byIDName)
	r = c.run(t, victim, "send", opsID, "secret")
	if r.code != exitcode.Usage || !strings.Contains(r.stderr, byIDName) || !strings.Contains(r.stderr, "its ID") {
		t.Fatalf("send to an ID that is also a name: code %d, want %d naming %s; stderr %q", r.code, exitcode.Usage, byIDName, r.stderr)
	}

	// Two invitations with one name: accept and decline refuse to guess.
	first := strings.TrimSpace(c.mustRun(t, attacker, "rooms", "create", "party"))
	second := strings.TrimSpace(c.mustRun(t, attacker, "rooms", "create", "--cleartext", "party"))
	for _, id := range []string{first, second} {
		c.mustRun(t, attacker, "rooms", "invite", id, victimPub)
	}
	for _, verb := range []string{"accept", "decline"} {
		r := c.run(t, victim, "rooms", verb, "party")
		if r.code != exitcode.Usage || !strings.Contains(r.stderr, first) || !strings.Contains(r.stderr, second) {
			t.Fatalf("rooms %s of an ambiguous invitation: code %d, want %d naming %s and %s; stderr %q", verb, r.code, exitcode.Usage, first, second, r.stderr)
		}
	}
	if out := c.mustRun(t, victim, "rooms", "decline", first); !strings.Contains(out, "declined") {
		t.Fatalf("rooms decline by ID: %q", out)
	}
	// The other is now the only one of that name.
	c.mustRun(t, victim, "rooms", "decline", "party")
	if r := c.run(t, victim, "rooms", "accept", second); r.code != exitcode.NotFound {
		t.Fatalf("accept a declined invitation: code %d, want %d; stderr %q", r.code, exitcode.NotFound, r.stderr)
	}
}

// attackerPub is the public key of the identity in file.
func attackerPub(t *testing.T, c cli, file string) string {
	t.Helper()
	return strings.TrimSpace(c.mustRun(t, file, "whoami", "--offline"))
}

// mustRun runs the CLI and fails the test unless it succeeds; it returns
// the standard output.
func (c cli) mustRun(t *testing.T, identityFile string, args ...string) string {
	t.Helper()
	r := c.run(t, identityFile, args...)
	if r.code != exitcode.OK {
		t.Fatalf("unibus %s: code %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}
