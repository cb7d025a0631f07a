package svc_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/unibus/unibus/kvstore"
	"github.com/unibus/unibus/subjects"
	"github.com/unibus/unibus/svc"
	"github.com/unibus/unibus/tests/natstest"
)

func TestConfigValidation(t *testing.T) {
	srv := natstest.RunServer(t)
	nc, js := natstest.JetStream(t, srv.ClientURL())
	open := func(ttl time.Duration) *kvstore.Store {
		st, err := kvstore.Open(context.Background(), js, kvstore.Config{Replicas: 1, Memory: true, NonceTTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	store := open(0)
	closed := natstest.Connect(t, srv.ClientURL())
	closed.Close()

	for _, tc := range []struct {
		name string
		cfg  svc.Config
	}{
		{"no store", svc.Config{Conn: nc}},
		{"no connection", svc.Config{Store: store}},
		{"closed connection", svc.Config{Store: store, Conn: closed}},
		{"unknown auth mode", svc.Config{Store: store, Conn: nc, AuthMode: "lenient"}},
		{"negative skew", svc.Config{Store: store, Conn: nc, MaxSkew: -time.Minute}},
		{"skew beyond the nonce window", svc.Config{Store: store, Conn: nc, MaxSkew: 5 * time.Minute}},
		// Twice the skew, but no margin for the instances' clocks to differ.
		{"nonce window without a clock margin", svc.Config{Store: open(4 * time.Minute), Conn: nc, MaxSkew: 2 * time.Minute}},
		{"negative request limit", svc.Config{Store: store, Conn: nc, MaxRequestBytes: -1}},
		{"bundle limit below request limit", svc.Config{Store: store, Conn: nc, MaxRequestBytes: 1 << 20, MaxBundleBytes: 1 << 10}},
		{"negative workers", svc.Config{Store: store, Conn: nc, Workers: -1}},
		{"too many workers", svc.Config{Store: store, Conn: nc, Workers: 1 << 20}},
		{"negative timeout", svc.Config{Store: store, Conn: nc, RequestTimeout: -time.Second}},
		{"not a semantic version", svc.Config{Store: store, Conn: nc, Version: "d61886b"}},
		{"endpoint limit for an unknown subject", svc.Config{Store: store, Conn: nc, EndpointMaxBytes: map[string]int{"unibus.v1.rooms.*": 1 << 10}}},
		{"endpoint limit for an endpoint name", svc.Config{Store: store, Conn: nc, EndpointMaxBytes: map[string]int{subjects.EndpointInvite: 1 << 10}}},
		{"zero endpoint limit", svc.Config{Store: store, Conn: nc, EndpointMaxBytes: map[string]int{subjects.RoomsGet: 0}}},
		{"endpoint limit over 64 MiB", svc.Config{Store: store, Conn: nc, EndpointMaxBytes: map[string]int{subjects.RoomsRekey: 65 << 20}}},
		{"blob put limit below a chunk", svc.Config{Store: store, Conn: nc, EndpointMaxBytes: map[string]int{subjects.BlobsPut: 64 << 10}}},
		{"bundle limit over 64 MiB", svc.Config{Store: store, Conn: nc, MaxBundleBytes: 65 << 20}},
		{"negative queue", svc.Config{Store: store, Conn: nc, QueueLength: -1}},
		{"queue too long", svc.Config{Store: store, Conn: nc, QueueLength: 1 << 20}},
		{"room limit beyond what a rekey can carry", svc.Config{Store: store, Conn: nc, MaxMembersPerRoom: 10_000}},
		{"room limit beyond what a smaller rekey limit can carry", svc.Config{Store: store, Conn: nc, MaxMembersPerRoom: 1000, EndpointMaxBytes: map[string]int{subjects.RoomsRekey: 1 << 20}}},
		{"rate limit not a number", svc.Config{Store: store, Conn: nc, RateLimit: math.NaN()}},
		{"infinite rate limit", svc.Config{Store: store, Conn: nc, RateLimit: math.Inf(1)}},
		{"negative burst", svc.Config{Store: store, Conn: nc, RateBurst: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := svc.Start(context.Background(), tc.cfg)
			if !errors.Is(err, svc.ErrConfigValidation) {
				if s != nil {
					_ = s.Stop()
				}
				t.Fatalf("Start = %v, want ErrConfigValidation", err)
			}
		})
	}

	// Limits off, limits raised together, limits overridden per endpoint.
	for _, cfg := range []svc.Config{
		{Store: store, Conn: nc, RateLimit: -1, MaxMembersPerRoom: -1, MaxRoomsPerUser: -1},
		{Store: store, Conn: nc, MaxMembersPerRoom: 5000, MaxBundleBytes: 9 << 20, RateLimit: 0.5, RateBurst: 1},
		{Store: store, Conn: nc, EndpointMaxBytes: map[string]int{subjects.UsersAdd: 1 << 10, subjects.BlobsPut: 1 << 20}},
	} {
		s, err := svc.Start(context.Background(), cfg)
		if err != nil {
			t.Fatalf("Start(%+v): %v", cfg, err)
		}
		if err := s.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}

	// A store that remembers nonces long enough allows a longer skew.
	s, err := svc.Start(context.Background(), svc.Config{Store: open(svc.MinNonceTTL(5 * time.Minute)), Conn: nc, MaxSkew: 5 * time.Minute, Version: "1.0.0-rc.1+build.5"})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

// TestStopOnCancel: canceling Start's context stops the services.
func TestStopOnCancel(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := e.cfg
	cfg.Conn = e.serviceConn(t)
	s, err := svc.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-s.Done():
	case <-time.After(requestTimeout):
		t.Fatal("services still running after their context was canceled")
	}
	if !s.Rooms().Stopped() || !s.Users().Stopped() {
		t.Error("micro services still running")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop after cancel: %v", err)
	}
	if _, err := svc.Start(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a canceled context = %v", err)
	}
}

// TestLargestBodyBytes: the largest body any endpoint accepts, defaults
// applied.
func TestLargestBodyBytes(t *testing.T) {
	for _, tc := range []struct {
		cfg  svc.Config
		want int
	}{
		{svc.Config{}, svc.DefaultMaxBundleBytes},
		{svc.Config{MaxRequestBytes: 8 << 20}, 8 << 20},
		{svc.Config{MaxBundleBytes: 2 << 20}, 2 << 20},
		{svc.Config{EndpointMaxBytes: map[string]int{subjects.RoomsRekey: 9 << 20}}, 9 << 20},
		{svc.Config{EndpointMaxBytes: map[string]int{subjects.UsersAdd: 1 << 10}}, svc.DefaultMaxBundleBytes},
	} {
		if got := tc.cfg.LargestBodyBytes(); got != tc.want {
			t.Errorf("%+v: %d, want %d", tc.cfg, got, tc.want)
		}
	}
}
