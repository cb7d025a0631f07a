package svc

import (
	"context"
	"errors"
	"time"

	"github.com/unibus/unibus/kvstore"
)

// Bounds of the janitor's interval: an eighth of the upload timeout, so
// that an abandoned upload goes at most that late.
const (
	minJanitorInterval = 10 * time.Millisecond
	maxJanitorInterval = time.Minute
)

// blobJanitor removes the uploads that did not complete within
// Config.BlobUploadTimeout of their first chunk: their chunks, their
// records and so their place in the quotas. Every instance of the services
// runs one over the shared store; they may meet on the same upload,
// which is safe: an upload is first marked expired by compare-and-set (so
// that it can neither complete nor take chunks any more, and a completion
// that won the race keeps its blob), and every deletion after that may be
// repeated.
type blobJanitor struct {
	blobs    *blobHandlers
	interval time.Duration
	cancel   context.CancelFunc
	done     chan struct{}
}

// startBlobJanitor starts the janitor of the uploads of h's store, which
// the blobs service owns: Services.Stop stops it.
func startBlobJanitor(h *handlers) *blobJanitor {
	return (&blobHandlers{handlers: h, objects: h.store.Blobs()}).startJanitor()
}

// startJanitor starts the janitor of h's uploads; stop stops it.
func (h *blobHandlers) startJanitor() *blobJanitor {
	ctx, cancel := context.WithCancel(context.Background())
	j := &blobJanitor{
		blobs:    h,
		interval: min(max(h.cfg.BlobUploadTimeout/8, minJanitorInterval), maxJanitorInterval),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	go j.run(ctx)
	return j
}

// stop stops the janitor and waits until it has stopped; a sweep in
// progress is canceled. It is safe to call more than once, and on nil (a
// janitor never started).
func (j *blobJanitor) stop() {
	if j == nil {
		return
	}
	j.cancel()
	<-j.done
}

func (j *blobJanitor) run(ctx context.Context) {
	defer close(j.done)
	t := time.NewTicker(j.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			j.sweep(ctx)
		}
	}
}

// sweep removes every upload whose time ran out, and drops the pending
// entries that outlived their upload, and returns how many uploads it
// removed. A failure is logged and left for the next sweep.
func (j *blobJanitor) sweep(ctx context.Context) int {
	h := j.blobs
	lctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	pending, err := h.store.PendingUploads(lctx)
	cancel()
	if err != nil {
		h.cfg.Logger.Warn("incomplete uploads not listed", "err", err)
		return 0
	}
	removed := 0
	for _, p := range pending {
		if ctx.Err() != nil {
			break
		}
		if time.Since(p.Since) < h.cfg.BlobUploadTimeout {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
		if j.expire(rctx, p) {
			removed++
		}
		cancel()
	}
	return removed
}

// expire removes the upload a pending entry names if its time ran out,
// and reports whether it did; the entry of a complete or vanished upload
// is dropped.
func (j *blobJanitor) expire(ctx context.Context, p kvstore.PendingUpload) bool {
	h := j.blobs
	log := h.cfg.Logger.With("room", p.RoomID, "blob", p.Blob)
	up, rev, err := h.store.GetUpload(ctx, p.RoomID, p.Blob)
	switch {
	case errors.Is(err, kvstore.ErrNotFound), err == nil && up.State == kvstore.UploadComplete:
		if err := h.store.DropPending(ctx, p); err != nil {
			log.Warn("stale pending upload entry not dropped", "err", err)
		}
		return false
	case err != nil:
		log.Warn("incomplete upload not read", "err", err)
		return false
	case time.Since(up.Started) < h.cfg.BlobUploadTimeout:
		return false // a newer upload of the same blob
	}
	if err := h.removeUpload(ctx, up, rev); err != nil {
		if errors.Is(err, kvstore.ErrConflict) {
			log.Debug("incomplete upload changed while it was removed: next sweep", "err", err)
		} else {
			log.Warn("incomplete upload not removed: next sweep", "err", err)
		}
		return false
	}
	log.Info("incomplete upload removed", "uploader", up.Uploader, "size", up.Size, "started", up.Started)
	return true
}
