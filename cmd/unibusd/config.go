package main

import (
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/conf"

	"github.com/unibus/unibus/internal/exitcode"
)

// applyConfigFile sets, from the configuration file at path, every flag
// that was neither given on the command line (explicit) nor through its
// environment variable (fromEnv): flags beat the environment, which beats
// the file, which beats the defaults.
//
// The file is in the NATS configuration format that operators already
// write for nats-server (parsed by nats-server's own conf package): one
// setting per flag, named like the flag with '_' or '-', e.g.
//
//	port: 4222
//	data: "/var/lib/unibus"
//	op_timeout: 2s
//	require_encrypted_rooms: true
//	routes: [ "nats-route://10.0.0.2:6222", "nats-route://10.0.0.3:6222" ]
//
// An unknown setting, a nested block or a value its flag refuses is an
// error naming the file and the setting, and unibusd does not start.
func applyConfigFile(fs *flag.FlagSet, path string, explicit, fromEnv map[string]bool) error {
	settings, err := conf.ParseFile(path)
	if err != nil {
		return fmt.Errorf("%w: config file %s: %w", exitcode.ErrUsage, path, err)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		name := strings.ReplaceAll(key, "_", "-")
		f := fs.Lookup(name)
		if f == nil || name == "config" || name == "version" {
			return fmt.Errorf("%w: config file %s: unknown setting %q (settings are the flags of unibusd --help)", exitcode.ErrUsage, path, key)
		}
		value, err := configValue(settings[key])
		if err != nil {
			return fmt.Errorf("%w: config file %s: %s: %w", exitcode.ErrUsage, path, key, err)
		}
		if explicit[name] || fromEnv[name] {
			continue
		}
		if err := fs.Set(name, value); err != nil {
			return fmt.Errorf("%w: config file %s: %s: invalid value %q: %w", exitcode.ErrUsage, path, key, value, err)
		}
	}
	return nil
}

// configValue turns a parsed NATS configuration value into a flag value.
// Lists become comma-separated (the form of the list flags).
func configValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			if _, nested := e.([]any); nested {
				return "", fmt.Errorf("a list may not hold lists")
			}
			s, err := configValue(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("unsupported value %v (%T): use a string, number, boolean or list", v, v)
	}
}
