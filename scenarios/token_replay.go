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
		Name:        "token-replay",
		Tier:        Hardening,
		Requires:    []harness.Capability{harness.CapTerminatesSPICE},
		Description: "a used token opens no second session; nothing reaches qemu",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "first session")
			defer s.Close()
			w := vm.WatchConnections()
			defer w.Close()
			_, err = harness.DialerFor(f).Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)
			nothingReached(ctx, t, "the replayed token", w)
			// The first session is untouched.
			_, err = s.Open(ctx, spice.ChannelCursor, 0)
			assert.NoError(t, err, "first session after the replay")
		},
	})
}
