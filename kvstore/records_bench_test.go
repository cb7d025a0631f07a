package kvstore

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/unibus/unibus/subjects"
)

// BenchmarkRecordValidation measures what validating records on read adds
// to a rooms.mine request (five index entries and five rooms, each room
// with its salt, so that its ID is checked against its owner) beside its
// floor, decoding the same ten records without the checks, in the same
// run, and reports the ratio (x-floor).
func BenchmarkRecordValidation(b *testing.B) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		b.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	s := &Store{logger: slog.New(slog.DiscardHandler)}
	var rooms, index []entry
	for range 5 {
		id, salt := subjects.NewRoomID(pub, subjects.ModeE2E)
		subject, _ := subjects.Room(id)
		r, _ := json.Marshal(Room{ID: id, Subject: subject, Mode: subjects.ModeE2E, History: "none", Owner: pub, Salt: salt, Epoch: 3, CreatedAt: time.Now()})
		x, _ := json.Marshal(indexEntry{Pub: pub, RoomID: id, Role: subjects.RoleMember})
		rooms = append(rooms, entry{key: id, value: r})
		index = append(index, entry{key: indexKey(pub, id), value: x})
	}
	var floorNs float64
	b.Run("decode only (floor)", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			for i := range rooms {
				var r Room
				var x indexEntry
				_ = json.Unmarshal(rooms[i].value, &r)
				_ = json.Unmarshal(index[i].value, &x)
			}
		}
		floorNs = float64(time.Since(start).Nanoseconds()) / float64(b.N)
	})
	b.Run("decode and validate", func(b *testing.B) {
		start := time.Now()
		for b.Loop() {
			if len(decodeRecords[Room](s, BucketRooms, rooms)) != 5 || len(decodeRecords[indexEntry](s, BucketRoomsByMember, index)) != 5 {
				b.Fatal("records refused")
			}
		}
		if floorNs > 0 {
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N)/floorNs, "x-floor")
		}
	})
}
