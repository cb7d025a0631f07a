package kvstore

import (
	"context"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/embedded"
	"github.com/unibus/unibus/subjects"
)

// BenchmarkReadLogForward measures catching up on 10,000 frames of ~400
// bytes of one room, other rooms' frames interleaved in the stream, in
// forward pages of subjects.MaxHistoryLimit through ReadLog, on file and
// on memory storage, reading each page with a batch direct get
// (pageByDirectGet) and through a consumer (pageByConsumer, ReadLog's):
// <way>-ns/msg is the wall time per frame read, <way>-cpu-ns/msg the
// process's CPU time (client and embedded server) per frame, x-faster and
// x-cpu the direct get's over the consumer's.
func BenchmarkReadLogForward(b *testing.B) {
	for _, storage := range []struct {
		name   string
		memory bool
	}{{"file", false}, {"memory", true}} {
		b.Run(storage.name, func(b *testing.B) {
			ctx := context.Background()
			js := benchServer(b)
			st, err := Open(ctx, js, Config{Replicas: 1, Memory: storage.memory})
			if err != nil {
				b.Fatal(err)
			}
			const frames, others = 10_000, 8
			room := benchRoomID(b, "the room read")
			var otherRooms [others]string
			for i := range otherRooms {
				otherRooms[i] = benchRoomID(b, "another room "+strconv.Itoa(i))
			}
			frame := make([]byte, 400)
			for i := range frames {
				if _, err := st.AppendFrame(ctx, room, "f-"+strconv.Itoa(i), frame, 0); err != nil {
					b.Fatal(err)
				}
				o := otherRooms[i%others]
				if _, err := st.AppendFrame(ctx, o, "o-"+strconv.Itoa(i), frame, 0); err != nil {
					b.Fatal(err)
				}
			}
			// Each iteration catches up once with each way of reading a
			// page, in turns, so that both see the same machine.
			modes := []struct {
				name      string
				read      func(*Store, context.Context, directGetRequest, int) (directBatch, error)
				wall, cpu time.Duration
			}{{name: "directget", read: (*Store).pageByDirectGet}, {name: "consumer", read: (*Store).pageByConsumer}}
			defer func(read func(*Store, context.Context, directGetRequest, int) (directBatch, error)) {
				forwardBatch = read
			}(forwardBatch)
			b.ResetTimer()
			for range b.N {
				for i := range modes {
					m := &modes[i]
					forwardBatch = m.read
					cpu0, start := cpuTime(), time.Now()
					if n := catchUp(ctx, b, st, room); n != frames {
						b.Fatalf("%s: read %d frames, want %d", m.name, n, frames)
					}
					m.wall += time.Since(start)
					m.cpu += cpuTime() - cpu0
				}
			}
			b.StopTimer()
			msgs := float64(b.N * frames)
			for _, m := range modes {
				b.ReportMetric(float64(m.wall.Nanoseconds())/msgs, m.name+"-ns/msg")
				b.ReportMetric(float64(m.cpu.Nanoseconds())/msgs, m.name+"-cpu-ns/msg")
			}
			b.ReportMetric(float64(modes[0].wall)/float64(modes[1].wall), "x-faster")
			b.ReportMetric(float64(modes[0].cpu)/float64(modes[1].cpu), "x-cpu")
		})
	}
}

// catchUp reads room's whole log in forward pages of
// subjects.MaxHistoryLimit and returns how many frames it read.
func catchUp(ctx context.Context, b *testing.B, st *Store, room string) int {
	n := 0
	var from uint64
	for {
		resp, err := st.ReadLog(ctx, room, 0, subjects.HistoryRequest{From: from, Limit: subjects.MaxHistoryLimit})
		if err != nil {
			b.Fatal(err)
		}
		n += len(resp.Frames)
		if resp.Next == 0 {
			return n
		}
		from = resp.Next
	}
}

func benchRoomID(b *testing.B, owner string) string {
	b.Helper()
	id, _ := subjects.NewRoomID(owner, subjects.ModeE2E)
	return id
}

// cpuTime is the process's user and system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchServer starts an embedded server and returns a JetStream context
// on it (testServer's twin for benchmarks).
func benchServer(b *testing.B) jetstream.JetStream {
	b.Helper()
	srv, err := embedded.Start(embedded.Config{Port: embedded.RandomPort, DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	return js
}
