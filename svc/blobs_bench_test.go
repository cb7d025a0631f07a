package svc_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
)

// BenchmarkBlobQuota measures what the quotas cost an upload: the upload
// of a one-chunk blob of 1 KiB (claim, reservation, chunk, completion,
// manifest) by a user who stores `own` blobs already in a room of as
// many, on a deployment that also holds `others` blobs of another user,
// with the quotas on, beside the same upload with the quotas off (no
// usage is counted) on another node in the same run. It reports the ratio
// of the two as quota/unlimited: the quotas cost a listing of the
// uploader's and the room's blobs, which grows with those and not with
// the rest of the store.
//
//	go test -run '^$' -bench BlobQuota -benchtime 200x ./svc/
func BenchmarkBlobQuota(b *testing.B) {
	for _, tc := range []struct{ own, others int }{{0, 0}, {0, 2000}, {200, 0}, {2000, 0}} {
		b.Run(fmt.Sprintf("own=%d/others=%d", tc.own, tc.others), func(b *testing.B) {
			limited := benchBlobEnv(b, 1<<40, tc.own, tc.others)
			unlimited := benchBlobEnv(b, -1, tc.own, tc.others)
			var withQuota, without time.Duration
			for b.Loop() {
				withQuota += limited.timeUpload(b)
				without += unlimited.timeUpload(b)
			}
			b.ReportMetric(float64(withQuota.Microseconds())/float64(b.N), "quota-µs/upload")
			b.ReportMetric(float64(without.Microseconds())/float64(b.N), "unlimited-µs/upload")
			b.ReportMetric(float64(withQuota)/float64(without), "quota/unlimited")
		})
	}
}

// benchBlob is a node whose alice uploads into room.
type benchBlob struct {
	e    *env
	room subjects.RoomInfo
}

// benchBlobEnv starts a node with quotas of quota bytes (-1: none) where
// alice stores own blobs in her room and bob others in his, written
// straight into the store.
func benchBlobEnv(b *testing.B, quota int64, own, others int) benchBlob {
	b.Helper()
	e := newEnv(b, withConfig(func(c *svc.Config) {
		c.MaxBlobBytesPerUser, c.MaxBlobBytesPerRoom = quota, quota
		c.RateLimit, c.RateBurst = 1e6, 1<<20
	}))
	room := e.createRoom(b, e.alice, subjects.ModeCleartext)
	e.seedUploads(b, e.alice, room.RoomID, own)
	e.seedUploads(b, e.bob, e.createRoom(b, e.bob, subjects.ModeCleartext).RoomID, others)
	return benchBlob{e: e, room: room}
}

// seedUploads records n complete blobs of 1 KiB of u in a room, as the
// quotas count them.
func (e *env) seedUploads(b *testing.B, u *user, roomID string, n int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range n {
		up := kvstore.Upload{RoomID: roomID, Blob: subjects.BlobID([]byte(rand.Text())), Uploader: u.pub, Size: 1 << 10, Started: time.Now()}
		rev, err := e.store.ClaimUpload(ctx, up)
		if err != nil {
			b.Fatal(err)
		}
		if err := e.store.IndexUpload(ctx, up); err != nil {
			b.Fatal(err)
		}
		if _, err := e.store.CompleteUpload(ctx, up, rev); err != nil {
			b.Fatal(err)
		}
	}
}

// timeUpload uploads a new blob of 1 KiB and returns how long it took.
func (bb benchBlob) timeUpload(b *testing.B) time.Duration {
	content := []byte(rand.Text() + rand.Text())
	content = append(content, make([]byte, 1<<10-len(content))...)
	m := bb.e.alice.msg(b, subjects.BlobsPut, putChunk(subjects.BlobID(content), content, bb.room, 0))
	start := time.Now()
	r := bb.e.alice.send(b, m)
	d := time.Since(start)
	if got := decode[subjects.BlobInfo](b, r); !got.Complete {
		b.Fatalf("upload not complete: %+v", got)
	}
	return d
}
