// Package envvar reads the settings that the command-line programs take
// from the environment (UNIBUS_SERVER, UNIBUS_INSECURE, …), through a
// getenv function so that tests pass their own environment.
package envvar

import (
	"fmt"
	"strconv"
)

// Or returns the environment variable key, or def when it is unset or
// empty.
func Or(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// Bool parses the boolean environment variable key: unset or empty is
// false; otherwise what strconv.ParseBool accepts (1, true, 0, false, …).
// Anything else is an error that names the variable and the value.
func Bool(getenv func(string) string, key string) (bool, error) {
	v := getenv(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want 1 or 0 (true or false)", key, v)
	}
	return b, nil
}
