package kvstore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// BenchmarkAppendFrame measures AppendFrame (a conditional publish with
// a message ID and the chain header, one at a time per room) beside its
// floor, a raw JetStream publish of a frame of the same size into the
// room log, in the same run on the same server: ns/op is AppendFrame's,
// floor-ns/op the raw publish's, x-floor their ratio.
func BenchmarkAppendFrame(b *testing.B) {
	ctx := context.Background()
	srv := natstest.RunServer(b)
	_, js := natstest.JetStream(b, srv.ClientURL())
	st, err := kvstore.Open(ctx, js, kvstore.Config{Replicas: 1, Memory: true})
	if err != nil {
		b.Fatal(err)
	}
	frame := make([]byte, 1024)
	raw, err := subjects.Room(anyRoomID())
	if err != nil {
		b.Fatal(err)
	}
	room := anyRoomID()
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = "frame-" + strconv.Itoa(i)
	}

	// The floor: what JetStream takes to store the frame at all.
	start := time.Now()
	for i := range b.N {
		msg := nats.NewMsg(raw)
		msg.Data = frame
		if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(ids[i])); err != nil {
			b.Fatal(err)
		}
	}
	floor := time.Since(start)

	b.ResetTimer()
	start = time.Now()
	for i := range b.N {
		if _, err := st.AppendFrame(ctx, room, ids[i], frame, 0); err != nil {
			b.Fatal(err)
		}
	}
	appended := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(floor.Nanoseconds())/float64(b.N), "floor-ns/op")
	b.ReportMetric(float64(appended)/float64(floor), "x-floor")
}
