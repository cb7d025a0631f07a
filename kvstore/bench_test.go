package kvstore_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/tests/natstest"
)

// BenchmarkStore measures the store's hot calls beside the raw JetStream KV
// operation each is built on, on the same server in the same run:
// GetUser vs RawGet, ClaimNonce vs RawCreate.
func BenchmarkStore(b *testing.B) {
	ctx := context.Background()
	srv := natstest.RunServer(b)
	_, js := natstest.JetStream(b, srv.ClientURL())
	st, err := kvstore.Open(ctx, js, kvstore.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	pub := newUserKey(b)
	if _, err := st.AddUser(ctx, kvstore.User{Pub: pub, Name: "bench"}); err != nil {
		b.Fatal(err)
	}
	users, err := js.KeyValue(ctx, kvstore.BucketUsers)
	if err != nil {
		b.Fatal(err)
	}
	nonces, err := js.KeyValue(ctx, kvstore.BucketNonces)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("RawGet", func(b *testing.B) {
		for b.Loop() {
			if _, err := users.Get(ctx, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetUserFromLeader", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.GetUserFromLeader(ctx, pub); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("GetUser", func(b *testing.B) {
		for b.Loop() {
			if u, err := st.GetUser(ctx, pub); u.Revoked() || err != nil {
				b.Fatal(u, err)
			}
		}
	})
	var seq atomic.Uint64
	b.Run("RawCreate", func(b *testing.B) {
		for b.Loop() {
			key := "raw" + strconv.FormatUint(seq.Add(1), 10)
			if _, err := nonces.Create(ctx, key, nil, jetstream.KeyTTL(kvstore.DefaultNonceTTL)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ClaimNonce", func(b *testing.B) {
		for b.Loop() {
			if err := st.ClaimNonce(ctx, "n"+strconv.FormatUint(seq.Add(1), 10)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkListRoomsForEndpoint lists the rooms of a member of 100 rooms
// while the store holds 1,000 or 10,000 rooms in all: the cost must follow
// the member's rooms, not the total. RawGet is one KV Get on the same
// server, the unit the listing is made of.
func BenchmarkListRoomsForEndpoint(b *testing.B) {
	for _, total := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("total=%d", total), func(b *testing.B) {
			ctx := context.Background()
			srv := natstest.RunServer(b)
			_, js := natstest.JetStream(b, srv.ClientURL())
			st, err := kvstore.Open(ctx, js, kvstore.Config{Replicas: 1, OpTimeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			member, other := newUserKey(b), newUserKey(b)
			const mine = 100
			createRooms(b, st, total, func(i int) string {
				if i < mine {
					return member
				}
				return other
			})
			rooms, err := js.KeyValue(ctx, kvstore.BucketRooms)
			if err != nil {
				b.Fatal(err)
			}
			keys, err := rooms.ListKeys(ctx)
			if err != nil {
				b.Fatal(err)
			}
			anyRoom := <-keys.Keys()
			_ = keys.Stop()

			b.Run("RawGet", func(b *testing.B) {
				for b.Loop() {
					if _, err := rooms.Get(ctx, anyRoom); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("member_of_100", func(b *testing.B) {
				for b.Loop() {
					refs, err := st.ListRoomsForEndpoint(ctx, member)
					if err != nil || len(refs) != mine {
						b.Fatalf("got %d rooms, %v", len(refs), err)
					}
				}
			})
		})
	}
}

// createRooms creates n encrypted rooms with 8 writers in parallel.
func createRooms(b *testing.B, st *kvstore.Store, n int, owner func(int) string) {
	b.Helper()
	ctx := context.Background()
	work := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Go(func() {
			for i := range work {
				r := kvstore.Room{ID: anyRoomID(), Mode: subjects.ModeE2E, Owner: owner(i)}
				if _, err := st.CreateRoom(ctx, r, sealedKey("sealed")); err != nil {
					failed.Store(err)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatalf("create rooms: %v", err)
	}
}

// BenchmarkListUsersPage reads one page of 200 users (with 1,216-byte
// encryption keys, as ML-KEM ones are) from buckets of 1,000 and 10,000
// users, beside the raw JetStream calls a page is made of, on the same
// server in the same run: RawListKeys lists every key of the bucket, and
// RawGetPage reads the page's 200 users one kv.Get at a time.
func BenchmarkListUsersPage(b *testing.B) {
	const pageSize = 200
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("users=%d", n), func(b *testing.B) {
			ctx := context.Background()
			srv := natstest.RunServer(b)
			_, js := natstest.JetStream(b, srv.ClientURL())
			st, err := kvstore.Open(ctx, js, kvstore.DefaultConfig())
			if err != nil {
				b.Fatal(err)
			}
			encKey, sig := make([]byte, 1216), make([]byte, 64)
			pubs := make([]string, 0, n)
			for range n {
				u, err := st.AddUser(ctx, kvstore.User{Pub: newUserKey(b)})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := st.SetEncryptionKey(ctx, u.Pub, kvstore.EncKeyBinding{Key: encKey, Sig: sig, Version: 1}); err != nil {
					b.Fatal(err)
				}
				pubs = append(pubs, u.Pub)
			}
			slices.Sort(pubs)
			after := pubs[n/2] // a page from the middle
			users, err := js.KeyValue(ctx, kvstore.BucketUsers)
			if err != nil {
				b.Fatal(err)
			}

			b.Run("RawListKeys", func(b *testing.B) {
				for b.Loop() {
					keys, err := users.ListKeys(ctx)
					if err != nil {
						b.Fatal(err)
					}
					count := 0
					for range keys.Keys() {
						count++
					}
					if count != n {
						b.Fatalf("listed %d keys, want %d", count, n)
					}
				}
			})
			b.Run("RawGetPage", func(b *testing.B) {
				for b.Loop() {
					for _, pub := range pubs[n/2+1 : n/2+1+pageSize] {
						if _, err := users.Get(ctx, pub); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
			b.Run("ListUsersPage", func(b *testing.B) {
				for b.Loop() {
					page, more, err := st.ListUsersPage(ctx, after, pageSize)
					if err != nil || len(page) != pageSize || !more {
						b.Fatalf("page = %d users, more %v, %v", len(page), more, err)
					}
				}
			})
		})
	}
}
