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
		Exercises:   ProxySPICE,
		Requires:    []harness.Capability{harness.CapTerminatesSPICE},
		Description: "a used token opens no second session (any refusal will do); nothing reaches qemu; the first session still works",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "first session")
			defer s.Close()
			w := vm.WatchConnections()
			defer w.Close()
			const what = "the used token, again"
			s2, err := harness.DialerFor(f).Connect(ctx)
			if wantRefusedSession(t, s2, err, what) {
				ownCode(t, env, err, spice.ErrPermissionDenied, what)
			}
			nothingReached(ctx, t, "the replayed token", w)
			// The first session is untouched.
			_, err = s.Open(ctx, spice.ChannelCursor, 0)
			assert.NoError(t, err, "first session after the replay")
		},
	})
}
