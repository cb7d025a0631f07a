package router

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// StatsData is the "data" of the send endpoint in "nats micro stats": what
// the router did with the sends, as its shards see them (micro itself
// measures only the hand-off to a shard).
type StatsData struct {
	// Received counts the sends that reached this instance.
	Received int64 `json:"received"`
	// Sent counts the sends accepted: stored (or, in a room that keeps no
	// history, delivered), duplicates included.
	Sent int64 `json:"sent"`
	// Stored counts the frames appended to the room log.
	Stored int64 `json:"stored"`
	// Duplicates counts the sends of a frame the log already held (a
	// retry): acknowledged with the first copy's sequence, not delivered.
	Duplicates int64 `json:"duplicates"`
	// Delivered counts the deliveries published, one per member per frame.
	Delivered int64 `json:"delivered"`
	// DeliveryErrors counts the deliveries that could not be published.
	DeliveryErrors int64 `json:"delivery_errors"`
	// Refused counts the refused sends by wire code ("403": n): 400 not a
	// frame of the room and sender, 403 not a member, 404 no such room,
	// 413 too large, 429 over the sender's rate, 503 unavailable or busy.
	Refused map[string]int64 `json:"refused"`
	// Rechecked counts the sends the membership view did not admit at
	// first (a member just added, a room just created: the view follows
	// the store a little behind it) that were admitted on a later check.
	Rechecked int64 `json:"rechecked"`
	// Misdirected counts the sends dropped unanswered and unprocessed
	// because their reply subject was not the sender's own inbox, or
	// their subject no send subject.
	Misdirected int64 `json:"misdirected"`
	// ProcessingTime is the total time from receipt to the ack or the
	// refusal, and AverageProcessingTime that over Received.
	ProcessingTime        time.Duration `json:"processing_time"`
	AverageProcessingTime time.Duration `json:"average_processing_time"`
	// LastError is the last refusal, "code message".
	LastError string `json:"last_error,omitempty"`
}

// stats are the counters behind StatsData.
type stats struct {
	received, sent, stored, duplicates atomic.Int64
	delivered, deliveryErrors          atomic.Int64
	misdirected, nanos, timed          atomic.Int64
	rechecked                          atomic.Int64

	mu        sync.Mutex
	refused   map[int]int64
	lastError string
}

func newStats() *stats { return &stats{refused: map[int]int64{}} }

// done records the time a send took.
func (s *stats) done(start time.Time) {
	s.nanos.Add(int64(time.Since(start)))
	s.timed.Add(1)
}

// refusal records a refused send.
func (s *stats) refusal(r *refusal) {
	s.mu.Lock()
	s.refused[r.code]++
	s.lastError = strconv.Itoa(r.code) + " " + r.message
	s.mu.Unlock()
}

func (s *stats) snapshot() StatsData {
	d := StatsData{
		Received:       s.received.Load(),
		Sent:           s.sent.Load(),
		Stored:         s.stored.Load(),
		Duplicates:     s.duplicates.Load(),
		Delivered:      s.delivered.Load(),
		DeliveryErrors: s.deliveryErrors.Load(),
		Misdirected:    s.misdirected.Load(),
		Rechecked:      s.rechecked.Load(),
		ProcessingTime: time.Duration(s.nanos.Load()),
		Refused:        map[string]int64{},
	}
	if n := s.timed.Load(); n > 0 {
		d.AverageProcessingTime = d.ProcessingTime / time.Duration(n)
	}
	s.mu.Lock()
	for code, n := range s.refused {
		d.Refused[strconv.Itoa(code)] = n
	}
	d.LastError = s.lastError
	s.mu.Unlock()
	return d
}
