package envvar

import (
	"strings"
	"testing"
)

func TestEnvVar(t *testing.T) {
	env := map[string]string{"SET": "x", "YES": "1", "NO": "false", "BAD": "maybe"}
	getenv := func(k string) string { return env[k] }
	if got := Or(getenv, "SET", "def"); got != "x" {
		t.Errorf("Or(SET) = %q", got)
	}
	if got := Or(getenv, "UNSET", "def"); got != "def" {
		t.Errorf("Or(UNSET) = %q", got)
	}
	for key, want := range map[string]bool{"YES": true, "NO": false, "UNSET": false} {
		if got, err := Bool(getenv, key); err != nil || got != want {
			t.Errorf("Bool(%s) = %v, %v; want %v", key, got, err, want)
		}
	}
	if _, err := Bool(getenv, "BAD"); err == nil || !strings.Contains(err.Error(), `BAD="maybe"`) {
		t.Errorf("Bool(BAD) = %v, want an error naming the variable and value", err)
	}
}
