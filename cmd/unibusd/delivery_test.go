package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/router"
)

// TestDeliverySettings: the router's and the room log's limits come from
// flags and the config file and land in the router's and the store's
// configuration; their defaults are the documented ones.
func TestDeliverySettings(t *testing.T) {
	cfg, err := nodeConfigOf(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Router; r.MaxFrameBytes != router.DefaultMaxFrameBytes || r.SendRate != router.DefaultSendRate || r.SendBurst != router.DefaultSendBurst {
		t.Errorf("default router limits %d %g %d", r.MaxFrameBytes, r.SendRate, r.SendBurst)
	}
	if s := cfg.Store; s.HistoryMaxAge != 720*time.Hour || s.HistoryMaxMsgsPerRoom != kvstore.DefaultHistoryMaxMsgsPerRoom || s.HistoryMaxBytes != 0 {
		t.Errorf("default history limits %s %d %d", s.HistoryMaxAge, s.HistoryMaxMsgsPerRoom, s.HistoryMaxBytes)
	}

	path := writeConfig(t, `
history_max_age: "168h"
history_max_msgs_per_room: -1
history_max_bytes: 2GB
max_frame_bytes: 64KB
send_rate: 2.5
`)
	cfg, err = nodeConfigOf(t, []string{"--config", path, "--send-burst", "7"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"history_max_age", float64(cfg.Store.HistoryMaxAge), float64(168 * time.Hour)},
		{"history_max_msgs_per_room", float64(cfg.Store.HistoryMaxMsgsPerRoom), -1},
		{"history_max_bytes", float64(cfg.Store.HistoryMaxBytes), 2 << 30},
		{"max_frame_bytes", float64(cfg.Router.MaxFrameBytes), 64 << 10},
		{"send_rate", cfg.Router.SendRate, 2.5},
		{"--send-burst", float64(cfg.Router.SendBurst), 7},
	} {
		if c.got != c.want {
			t.Errorf("%s = %g, want %g", c.name, c.got, c.want)
		}
	}
	if cfg, err = nodeConfigOf(t, []string{"--send-rate", "-1"}); err != nil || cfg.Router.SendRate != -1 {
		t.Errorf("--send-rate -1: %g, %v; want the limit off", cfg.Router.SendRate, err)
	}
}

// TestDeliverySettingsRefused: a limit that is no limit is a usage error
// at once; one the router or the store refuses stops unibusd before it
// serves, with what to change.
func TestDeliverySettingsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-frame-bytes", "0"}, "--max-frame-bytes 0 is no limit"},
		{[]string{"--send-rate", "0"}, "--send-rate 0 is no limit"},
		{[]string{"--send-rate", "-2"}, "or -1 to turn the limit off"},
		{[]string{"--send-burst", "0"}, "--send-burst 0 is no limit"},
		{[]string{"--history-max-age", "0s"}, "--history-max-age 0 is no limit"},
		{[]string{"--history-max-msgs-per-room", "0"}, "--history-max-msgs-per-room 0 is no limit"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := nodeConfigOf(t, tc.args)
			if !errors.Is(err, exitcode.ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a usage error saying %q", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a frame beyond what receivers read", []string{"--max-frame-bytes", "2000000"}, "max frame bytes must be"},
		{"a frame too small", []string{"--max-frame-bytes", "100"}, "max frame bytes must be"},
		{"a frame whose history reply the publish limit stops", []string{"--max-frame-bytes", "1000000", "--max-publish-bytes", "1100000", "--max-bundle-bytes", "1000000"}, "history reply"},
		{"a negative burst", []string{"--send-burst", "-3"}, "send burst must be"},
		{"history kept under a minute", []string{"--history-max-age", "30s"}, "history max age must be at least"},
		{"a negative count of frames", []string{"--history-max-msgs-per-room", "-5"}, "history max messages per room"},
		{"a tiny room log", []string{"--history-max-bytes", "1000"}, "history max bytes must be at least"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := &serveCommand{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: envOf(map[string]string{"UNIBUS_DATA": t.TempDir()})}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := cmd.Run(ctx, append([]string{"--port", "-1"}, tc.args...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error saying %q", err, tc.want)
			}
			if exitCode(err) == 0 {
				t.Fatalf("exit code 0 for %v", err)
			}
		})
	}
}
