package exitcode

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/unibus/unibus/client"
	"github.com/unibus/unibus/identity"
)

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, OK},
		{flag.ErrHelp, OK},
		{fmt.Errorf("bad flag: %w", ErrUsage), Usage},
		{fmt.Errorf("%w: nats://far", client.ErrInsecureURL), Usage},
		{fmt.Errorf("connect: %w", nats.ErrAuthorization), Refused},
		{client.ErrForbidden, Refused},
		{client.ErrNotFound, NotFound},
		{identity.ErrExists, Conflict},
		{fmt.Errorf("%w at u: %w", client.ErrConnect, nats.ErrNoServers), Unavailable},
		{context.DeadlineExceeded, Unavailable},
		{context.Canceled, Interrupted},
		{errors.New("anything else"), Error},
	} {
		if got := Of(tc.err); got != tc.want {
			t.Errorf("Of(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
