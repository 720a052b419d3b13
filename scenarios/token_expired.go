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
		Exercises:   ProxySPICE,
		Description: "a token past its lifetime is refused (any refusal will do); nothing reaches qemu",
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
			const what = "the expired token"
			s2, err := harness.DialerFor(f).Connect(ctx)
			if wantRefusedSession(t, s2, err, what) {
				ownCode(t, env, err, spice.ErrPermissionDenied, what)
			}
			nothingReached(ctx, t, "the expired token", w)
		},
	})
}
