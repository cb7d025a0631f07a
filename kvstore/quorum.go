package kvstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoQuorum means a replicated bucket's stream cannot reach a majority
// of its replicas: reads that admit must not be served.
var ErrNoQuorum = errors.New("no quorum")

const (
	// replicaSilenceBound is how long a replica may go unheard by the
	// stream leader before it is counted as lost. Raft heartbeats every
	// second; three missed ones are a lost replica.
	replicaSilenceBound = 3 * time.Second
	// quorumCheckTTL is how long one quorum check is reused.
	quorumCheckTTL = 500 * time.Millisecond
)

// quorumGate remembers the last quorum check of the users bucket, so that
// admission pays one stream-info request per quorumCheckTTL, not one per
// connection. sem serializes checks and lets waiters give up with their
// context.
type quorumGate struct {
	sem       chan struct{}
	checkedAt time.Time
	err       error
}

func newQuorumGate() *quorumGate { return &quorumGate{sem: make(chan struct{}, 1)} }

// checkUsersQuorum returns nil when the users bucket is a single replica,
// or when its stream leader hears a majority of the replicas (itself
// included) within replicaSilenceBound. A Raft leader that has lost its
// followers keeps leading, and answering leader reads, for up to about 20
// seconds before it notices; this check notices within the silence bound
// plus quorumCheckTTL, so admission fails closed soon after a cluster
// loses quorum. Any error (no leader, a timeout) is a failure.
func (s *Store) checkUsersQuorum(ctx context.Context) error {
	if s.replicas <= 1 {
		return nil
	}
	g := s.quorum
	select {
	case g.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("quorum check: %w", ctx.Err())
	}
	defer func() { <-g.sem }()
	if s.now().Sub(g.checkedAt) < quorumCheckTTL && !g.checkedAt.IsZero() {
		return g.err
	}
	g.err = s.usersQuorum(ctx)
	g.checkedAt = s.now()
	return g.err
}

func (s *Store) usersQuorum(ctx context.Context) error {
	stream, err := s.js.Stream(ctx, kvStream(BucketUsers))
	if err != nil {
		return fmt.Errorf("quorum check %s: %w", BucketUsers, err)
	}
	info := stream.CachedInfo()
	return quorumOf(info, replicaSilenceBound)
}

// quorumOf decides from a stream's cluster info whether its leader hears a
// majority of its replicas.
func quorumOf(info *jetstream.StreamInfo, silence time.Duration) error {
	if info == nil || info.Cluster == nil || info.Cluster.Leader == "" {
		return fmt.Errorf("%w: the stream has no leader", ErrNoQuorum)
	}
	replicas := max(info.Config.Replicas, 1)
	heard := 1 // the leader
	for _, p := range info.Cluster.Replicas {
		if p != nil && !p.Offline && p.Active < silence {
			heard++
		}
	}
	if need := replicas/2 + 1; heard < need {
		return fmt.Errorf("%w: the leader hears %d of %d replicas, %d needed", ErrNoQuorum, heard, replicas, need)
	}
	return nil
}
