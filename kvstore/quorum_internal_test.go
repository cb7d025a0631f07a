package kvstore

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestQuorumOf(t *testing.T) {
	peer := func(active time.Duration, offline bool) *jetstream.PeerInfo {
		return &jetstream.PeerInfo{Name: "p", Active: active, Offline: offline, Current: true}
	}
	info := func(replicas int, leader string, peers ...*jetstream.PeerInfo) *jetstream.StreamInfo {
		return &jetstream.StreamInfo{
			Config:  jetstream.StreamConfig{Replicas: replicas},
			Cluster: &jetstream.ClusterInfo{Leader: leader, Replicas: peers},
		}
	}
	const silence = 3 * time.Second
	for _, tc := range []struct {
		name string
		info *jetstream.StreamInfo
		ok   bool
	}{
		{"no info", nil, false},
		{"no cluster info", &jetstream.StreamInfo{Config: jetstream.StreamConfig{Replicas: 3}}, false},
		{"no leader", info(3, "", peer(0, false), peer(0, false)), false},
		{"R3 all heard", info(3, "n1", peer(time.Second, false), peer(500*time.Millisecond, false)), true},
		{"R3 one silent", info(3, "n1", peer(time.Second, false), peer(10*time.Second, false)), true},
		{"R3 one offline", info(3, "n1", peer(0, true), peer(time.Second, false)), true},
		{"R3 both silent", info(3, "n1", peer(4*time.Second, false), peer(10*time.Second, false)), false},
		{"R3 silent and offline", info(3, "n1", peer(0, true), peer(20*time.Second, false)), false},
		{"R3 peers unknown yet", info(3, "n1"), false},
		{"R5 two of four heard", info(5, "n1", peer(0, false), peer(0, false), peer(9*time.Second, false), peer(0, true)), true},
		{"R5 one of four heard", info(5, "n1", peer(0, false), peer(9*time.Second, false), peer(9*time.Second, false), peer(0, true)), false},
		{"R1 leader alone", info(1, "n1"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := quorumOf(tc.info, silence)
			if (err == nil) != tc.ok {
				t.Fatalf("quorumOf = %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrNoQuorum) {
				t.Fatalf("error %v does not match ErrNoQuorum", err)
			}
		})
	}
}
