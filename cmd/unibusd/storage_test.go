package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unibus/unibus/authcallout"
	"github.com/unibus/unibus/internal/exitcode"
	"github.com/unibus/unibus/svc"
)

// TestStorageSettings: the storage limits come from flags and the config
// file (with NATS size suffixes) and land where they act: the account's
// JetStream limits, the object store's size, the services' quotas and
// upload timeout. Their defaults are the documented ones.
func TestStorageSettings(t *testing.T) {
	cfg, err := nodeConfigOf(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Callout.Limits; l.MaxFileStore != authcallout.DefaultMaxFileStore || l.MaxMemoryStore != authcallout.DefaultMaxMemoryStore {
		t.Errorf("default account storage %d/%d", l.MaxFileStore, l.MaxMemoryStore)
	}
	if s := cfg.Services; s.MaxBlobBytes != svc.DefaultMaxBlobBytes || s.MaxBlobBytesPerUser != svc.DefaultMaxBlobBytesPerUser ||
		s.MaxBlobBytesPerRoom != svc.DefaultMaxBlobBytesPerRoom || s.BlobUploadTimeout != svc.DefaultBlobUploadTimeout || cfg.Store.BlobStoreMaxBytes != 0 {
		t.Errorf("default blob limits %d %d %d %s, blob store %d", s.MaxBlobBytes, s.MaxBlobBytesPerUser, s.MaxBlobBytesPerRoom, s.BlobUploadTimeout, cfg.Store.BlobStoreMaxBytes)
	}

	path := writeConfig(t, `
max_file_store: 64GB
max_memory_store: -1
blob_store_max_bytes: 40GB
max_blob_bytes: 128MB
max_blob_bytes_per_user: 2GB
blob_upload_timeout: "30m"
`)
	cfg, err = nodeConfigOf(t, []string{"--config", path, "--max-blob-bytes-per-room", "-1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want int64
	}{
		{"max_file_store", cfg.Callout.Limits.MaxFileStore, 64 << 30},
		{"max_memory_store", cfg.Callout.Limits.MaxMemoryStore, -1},
		{"blob_store_max_bytes", cfg.Store.BlobStoreMaxBytes, 40 << 30},
		{"max_blob_bytes", cfg.Services.MaxBlobBytes, 128 << 20},
		{"max_blob_bytes_per_user", cfg.Services.MaxBlobBytesPerUser, 2 << 30},
		{"--max-blob-bytes-per-room", cfg.Services.MaxBlobBytesPerRoom, -1},
		{"blob_upload_timeout", int64(cfg.Services.BlobUploadTimeout), int64(30 * time.Minute)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// TestStorageSettingsRefused: incoherent storage limits stop unibusd
// before it serves, with what to change.
func TestStorageSettingsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"account storage below the minimum", []string{"--max-memory-store", "1000"}, "max memory store must be at least"},
		{"user quota below the largest blob", []string{"--max-blob-bytes-per-user", "1000"}, "max blob bytes per user"},
		{"upload timeout within two requests", []string{"--blob-upload-timeout", "15s"}, "blob upload timeout"},
		{"blob store over three quarters", []string{"--max-file-store", "67108864", "--blob-store-max-bytes", "62914560"}, "less than a quarter"},
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

// TestNATSConfigStorage: nats-config writes the account's JetStream
// storage limits, and refuses incoherent ones before creating anything.
func TestNATSConfigStorage(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "unibus.creds")
	var out bytes.Buffer
	if err := (&natsConfigCommand{Stdout: &out, Stderr: &bytes.Buffer{}, Getenv: envOf(nil)}).Run(context.Background(),
		[]string{"--creds", creds, "--max-file-store", "100000000", "--max-memory-store", "-1"}); err != nil {
		t.Fatal(err)
	}
	if want := "jetstream: { max_file: 100000000, max_mem: -1 }"; !strings.Contains(out.String(), want) {
		t.Errorf("configuration without %q:\n%s", want, out.String())
	}
	err := (&natsConfigCommand{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: envOf(nil)}).Run(context.Background(),
		[]string{"--creds", filepath.Join(dir, "new.creds"), "--max-file-store", "-2"})
	if !errors.Is(err, exitcode.ErrUsage) || !errors.Is(err, authcallout.ErrConfigValidation) {
		t.Errorf("--max-file-store -2: %v, want a usage error", err)
	}
}
