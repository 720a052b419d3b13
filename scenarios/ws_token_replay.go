package scenarios

import (
	"context"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "ws-token-replay",
		Tier:        Browser,
		Description: "a used WebSocket URL and password open no second session (refused before or in the link); nothing reaches qemu",
		// A gateway that only relays bytes hands out qemu's own ticket,
		// which qemu lets open links until it expires (tunnel-ticket-expiry
		// checks that family): single use is a terminating gateway's.
		Requires: append([]harness.Capability{harness.CapTerminatesSPICE}, wsLane...),
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f := fetchWS(ctx, t, env, vm)
			s, err := harness.DialerFor(f).Connect(ctx)
			require.NoError(t, err, "first session")
			defer s.Close()
			w := vm.WatchConnections()
			defer w.Close()
			_, err = harness.DialerFor(f).Connect(ctx)
			wantWSRefused(t, err, "the replayed URL and password")
			nothingReached(ctx, t, "the replayed token", w)
			// The first session is untouched, and its other channels still
			// present the same URL and password (as spice-html5 does).
			_, err = s.Open(ctx, spice.ChannelCursor, 0)
			assert.NoError(t, err, "first session after the replay")
		},
	})
}
