package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CursorSuffix names the cursor file beside the identity file:
// IDENTITY.cursor.
const CursorSuffix = ".cursor"

// cursor is where the bot is: per room, the room-log sequence of the last
// message it processed, and the sequence of the last event it handled. It
// is kept in a JSON file:
//
//	{"rooms": {"<room ID>": 1042, …}, "events": 17}
//
// The cursor spares work, it does not make answers exactly-once: a bot
// that lost it starts from the first message of each room it may see and
// skips those it has answered already (see bot.scanAnswers).
type cursor struct {
	Rooms  map[string]uint64 `json:"rooms"`
	Events uint64            `json:"events"`
}

func newCursor() cursor { return cursor{Rooms: map[string]uint64{}} }

// loadCursor reads the cursor file; a file that does not exist is an
// empty cursor.
func loadCursor(path string) (cursor, error) {
	c := newCursor()
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read cursor: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return newCursor(), fmt.Errorf("read cursor %s: %w", path, err)
	}
	if c.Rooms == nil {
		c.Rooms = map[string]uint64{}
	}
	return c, nil
}

// save writes the cursor file atomically and durably: a temporary file in
// the same directory, written and synced, renamed over the file, then the
// directory synced, so that a crash leaves either the old cursor or the
// new one, never a torn one.
func (c cursor) save(path string) (err error) {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return fmt.Errorf("save cursor: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("save cursor: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("save cursor: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save cursor: sync directory: %w", err)
	}
	return nil
}
