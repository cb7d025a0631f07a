package authcallout

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/unibus/unibus/kvstore"
)

// kickTimeout bounds one user's kick across the cluster.
const kickTimeout = 2 * time.Second

// KickDelay is how long after an access change the watcher waits before it
// disconnects the user: the reply to the request that made the change is
// on its way, often to that very user (it created or left a room, an admin
// revoked itself), and a disconnection a few milliseconds after the write
// would lose it.
const KickDelay = 100 * time.Millisecond

// Watcher turns access changes in the store into disconnections: a revoked
// user's connections are closed; a user whose rooms or admin flag changed
// is disconnected so that it reconnects through the callout and gets its
// new permissions. Clients are expected to reconnect and resubscribe.
type Watcher struct {
	watch  *kvstore.AccessWatcher
	kicker *Kicker
	logger *slog.Logger
	stop   chan struct{}
	wg     sync.WaitGroup
}

// StartWatcher follows store changes and kicks through kicker until Stop.
func StartWatcher(ctx context.Context, store *kvstore.Store, kicker *Kicker, logger *slog.Logger) (*Watcher, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	aw, err := store.WatchAccess(ctx)
	if err != nil {
		return nil, fmt.Errorf("start access watcher: %w", err)
	}
	w := &Watcher{watch: aw, kicker: kicker, logger: logger, stop: make(chan struct{})}
	w.wg.Go(w.run)
	return w, nil
}

func (w *Watcher) run() {
	for change := range w.watch.Changes() {
		// Connections that start after the change was seen already see it.
		before := change.At
		wait := time.NewTimer(time.Until(before.Add(KickDelay)))
		select {
		case <-wait.C:
		case <-w.stop:
			wait.Stop()
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), kickTimeout)
		n, err := w.kicker.Kick(ctx, change.Pub, before)
		cancel()
		if err != nil {
			w.logger.Warn("disconnect after access change", "pub", change.Pub, "reason", change.Reason, "kicked", n, "err", err)
			continue
		}
		w.logger.Info("disconnected after access change", "pub", change.Pub, "reason", change.Reason, "kicked", n)
	}
}

// Stop stops watching and waits for any kick in progress.
func (w *Watcher) Stop() {
	close(w.stop)
	w.watch.Stop()
	w.wg.Wait()
}
