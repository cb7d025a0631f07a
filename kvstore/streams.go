package kvstore

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/subjects"
)

// Stream names: the only place they are spelled.
const (
	// StreamRoomLog is the room log: every room's stored frames, at
	// subjects.Room(roomID), captured from subjects.RoomLogAll. Each
	// message is a frame as sent, with its ID as Nats-Msg-Id and the
	// sequence of the room's previous frame in subjects.HeaderPrev (see
	// AppendFrame).
	StreamRoomLog = "UNIBUS_room_log"
	// StreamEvents holds every user's events (subjects.Event, JSON), at
	// subjects.Events(pub), captured from subjects.EventsAll.
	StreamEvents = "UNIBUS_events"
)

// Streams lists the streams the store creates besides the buckets
// (Buckets), by name.
func Streams() []string {
	return []string{StreamRoomLog, StreamEvents}
}

// eventsDuplicateWindow is the events stream's duplicate window: events
// carry no message ID, so it only needs to be short.
const eventsDuplicateWindow = 2 * time.Minute

// openStreams creates (or updates) the room log and the events stream
// with cfg's replicas and storage and the sizes of sizes.
func (s *Store) openStreams(ctx context.Context, cfg Config, storage jetstream.StorageType, sizes storageSizes) error {
	streams := []struct {
		stream *jetstream.Stream
		what   string
		conf   jetstream.StreamConfig
	}{
		{&s.roomLog, "the room log", jetstream.StreamConfig{
			Name:              StreamRoomLog,
			Description:       "unibus room log: each room's frames as sent, chained by " + subjects.HeaderPrev,
			Subjects:          []string{subjects.RoomLogAll},
			Retention:         jetstream.LimitsPolicy,
			MaxAge:            cfg.HistoryMaxAge,
			MaxMsgsPerSubject: cfg.HistoryMaxMsgsPerRoom,
			MaxBytes:          sizes.history,
			Discard:           jetstream.DiscardOld,
			Duplicates:        min(HistoryDuplicateWindow, cfg.HistoryMaxAge),
			AllowDirect:       true,
			AllowMsgTTL:       true,
		}},
		{&s.events, "the events", jetstream.StreamConfig{
			Name:              StreamEvents,
			Description:       "unibus user events: invitations, removals, rekeys, revocations",
			Subjects:          []string{subjects.EventsAll},
			Retention:         jetstream.LimitsPolicy,
			MaxAge:            InvitationTTL,
			MaxMsgsPerSubject: EventsMaxPerUser,
			MaxBytes:          sizes.events,
			Discard:           jetstream.DiscardOld,
			Duplicates:        eventsDuplicateWindow,
			AllowDirect:       true,
		}},
	}
	for _, st := range streams {
		st.conf.Replicas = cfg.Replicas
		st.conf.Storage = storage
		cctx, cancel := s.bound(ctx)
		stream, err := s.js.CreateOrUpdateStream(cctx, st.conf)
		cancel()
		if err != nil {
			return storageError(err, st.what, "stream "+st.conf.Name, st.conf.MaxBytes, cfg.Replicas)
		}
		*st.stream = stream
	}
	return nil
}

// HistoryMaxAge is the deployment's maximum age of stored frames
// (Config.HistoryMaxAge, the room log's MaxAge): a room may keep its
// frames for less, never longer.
func (s *Store) HistoryMaxAge() time.Duration { return s.historyMaxAge }

// LogPosition returns the room log's last sequence, stream-wide: a member
// invited now sees the frames stored after it (Member.FromSeq).
func (s *Store) LogPosition(ctx context.Context) (uint64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	info, err := s.roomLog.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the room log's position: %w", err)
	}
	return info.State.LastSeq, nil
}
