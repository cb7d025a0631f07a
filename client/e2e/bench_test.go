package e2e

import (
	"fmt"
	"testing"
	"time"
)

var payloadSizes = []int{256, 4 << 10}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func BenchmarkSealFrame(b *testing.B) {
	s := newSealer(b, SealerConfig{Identity: newIdentity(b), Room: testRoom, Epoch: 1, RoomKey: NewRoomKey()})
	for _, size := range payloadSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			payload := make([]byte, size)
			now := time.Now()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Seal(Message{Payload: payload}, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpenFrame measures what a subscriber does per frame: decode,
// membership and epoch checks, signature, replay window, decryption.
func BenchmarkOpenFrame(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			sender := newIdentity(b)
			roomKey := NewRoomKey()
			ring := newTestRing(fixedOwner(b).PublicKey())
			ring.setState(testRoom, RoomState{Epoch: 1, Since: time.Now()})
			ring.setKey(testRoom, 1, roomKey)
			ring.addMember(testRoom, sender.PublicKey())
			s := newSealer(b, SealerConfig{Identity: sender, Room: testRoom, Epoch: 1, RoomKey: roomKey})

			// Distinct frames, so the replay window accepts each; a new
			// receiver (empty window) every time the pool wraps.
			const pool = 1024
			wires := make([][]byte, pool)
			now := time.Now()
			for i := range wires {
				_, wires[i] = seal(b, s, Message{Payload: make([]byte, size)}, now)
			}
			var recv *Receiver
			i := 0
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if i%pool == 0 {
					recv = newReceiver(b, ring)
				}
				if _, err := recv.Receive(testRoom, wires[i%pool], now); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkSealRoomKey(b *testing.B) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		b.Fatal(err)
	}
	pub, recipient, roomKey := k.PublicKey(), newIdentity(b).PublicKey(), NewRoomKey()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SealRoomKey(pub, testRoom, 2, recipient, roomKey); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenRoomKey(b *testing.B) {
	k, err := GenerateEncryptionKey()
	if err != nil {
		b.Fatal(err)
	}
	recipient, roomKey := newIdentity(b).PublicKey(), NewRoomKey()
	sealed, err := SealRoomKey(k.PublicKey(), testRoom, 2, recipient, roomKey)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := OpenRoomKey(k, testRoom, 2, recipient, sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRekey1000 seals a fresh room key to 1,000 members, checking each
// member's key binding: the cryptographic work of one rekey.
func BenchmarkRekey1000(b *testing.B) {
	const n = 1000
	recipients := make([]Recipient, n)
	for i := range recipients {
		recipients[i] = newMember(b).rcp
	}
	b.Run("SealRoomKeys", func(b *testing.B) {
		for b.Loop() {
			sealed, err := SealRoomKeys(testRoom, 2, NewRoomKey(), recipients)
			if err != nil {
				b.Fatal(err)
			}
			if len(sealed) != n {
				b.Fatalf("%d sealed keys", len(sealed))
			}
		}
	})
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			roomKey := NewRoomKey()
			for _, r := range recipients {
				if _, err := sealTo(r, r.Pub, testRoom, 2, roomKey); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkGrantPerFrame measures what the sender's key grant costs a
// receiver per sealed frame, in one run: Open (signature and decryption,
// no receiver checks: the floor), a Receiver's Accept of a frame whose
// grant it verified before (cached: the steady state) and of a frame whose
// grant it has not seen (uncached: a sender's first frame in an epoch).
// Each iteration does all three on frames of the same size; the metrics
// are nanoseconds per frame of each and the ratios to the floor.
func BenchmarkGrantPerFrame(b *testing.B) {
	const pool = 512
	owner, roomKey := fixedOwner(b), NewRoomKey()
	ring := newTestRing(owner.PublicKey())
	ring.setState(testRoom, RoomState{Epoch: 1, Since: time.Now()})
	ring.setKey(testRoom, 1, roomKey)
	now := time.Now()
	payload := make([]byte, 256)

	// One steady sender; pool new senders, one frame each.
	steady := newSealer(b, SealerConfig{Identity: newIdentity(b), Room: testRoom, Epoch: 1, RoomKey: roomKey})
	steadyFrames := make([]Frame, pool)
	firstFrames := make([]Frame, pool)
	for i := range pool {
		steadyFrames[i], _ = seal(b, steady, Message{Payload: payload}, now)
		s := newSealer(b, SealerConfig{Identity: newIdentity(b), Room: testRoom, Epoch: 1, RoomKey: roomKey})
		firstFrames[i], _ = seal(b, s, Message{Payload: payload}, now)
	}
	warmUp, _ := seal(b, steady, Message{Payload: payload}, now)
	var cached, uncached *Receiver
	var open, acceptCached, acceptUncached time.Duration
	i := 0
	for b.Loop() {
		if i%pool == 0 {
			// Fresh replay windows; the steady sender's grant is cached
			// by its first frame, before timing starts.
			cached, uncached = newReceiver(b, ring), newReceiver(b, ring)
			if _, err := cached.Accept(testRoom, warmUp, now); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		if _, err := Open(steadyFrames[i%pool], roomKey); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := cached.Accept(testRoom, steadyFrames[i%pool], now); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if _, err := uncached.Accept(testRoom, firstFrames[i%pool], now); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		open += t1.Sub(t0)
		acceptCached += t2.Sub(t1)
		acceptUncached += t3.Sub(t2)
		i++
	}
	n := float64(i)
	b.ReportMetric(float64(open.Nanoseconds())/n, "ns/open")
	b.ReportMetric(float64(acceptCached.Nanoseconds())/n, "ns/accept-cached")
	b.ReportMetric(float64(acceptUncached.Nanoseconds())/n, "ns/accept-uncached")
	b.ReportMetric(float64(acceptCached)/float64(open), "cached/open")
	b.ReportMetric(float64(acceptUncached)/float64(open), "uncached/open")
}
