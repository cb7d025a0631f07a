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
// to a rooms.mine request (five index entries and five rooms) beside its
// floor, decoding the same ten records without the checks, in the same
// run.
func BenchmarkRecordValidation(b *testing.B) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		b.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	s := &Store{logger: slog.New(slog.DiscardHandler)}
	var rooms, index []entry
	for range 5 {
		id := subjects.NewRoomID()
		subject, _ := subjects.Room(id)
		r, _ := json.Marshal(Room{ID: id, Subject: subject, Mode: subjects.ModeE2E, History: "none", Owner: pub, Epoch: 3, CreatedAt: time.Now()})
		x, _ := json.Marshal(indexEntry{Pub: pub, RoomID: id, Role: subjects.RoleMember})
		rooms = append(rooms, entry{key: id, value: r})
		index = append(index, entry{key: indexKey(pub, id), value: x})
	}
	b.Run("decode only (floor)", func(b *testing.B) {
		for b.Loop() {
			for i := range rooms {
				var r Room
				var x indexEntry
				_ = json.Unmarshal(rooms[i].value, &r)
				_ = json.Unmarshal(index[i].value, &x)
			}
		}
	})
	b.Run("decode and validate", func(b *testing.B) {
		for b.Loop() {
			if len(decodeRecords[Room](s, BucketRooms, rooms)) != 5 || len(decodeRecords[indexEntry](s, BucketRoomsByMember, index)) != 5 {
				b.Fatal("records refused")
			}
		}
	})
}
