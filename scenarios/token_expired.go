package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "token-expired",
		Tier:        Hardening,
		Description: "a token past its lifetime is refused with PERMISSION_DENIED; nothing reaches qemu",
		// The target's token clock moves when it can (in-process); else
		// the scenario waits its known lifetime out.
		Requires: []harness.Capability{harness.CapTokenTTL},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			// A session proves the lane works.
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "warm-up session")
			s.Close()
			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			require.NoError(t, err, "fetch proxy .vv")
			ttl, err := env.PassTokenLifetime(ctx)
			require.NoError(t, err, "let the token's lifetime pass")
			t.Logf("token lifetime %v passed", ttl)
			w := vm.WatchConnections()
			defer w.Close()
			_, err = harness.DialerFor(f).Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)
			nothingReached(ctx, t, "the expired token", w)
		},
	})
}
