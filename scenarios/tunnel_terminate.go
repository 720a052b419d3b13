package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name: "tunnel-terminate",
		Tier: Hardening,
		Description: "terminating a console through the API cuts its open CONNECT tunnels and refuses the tunnel .vv " +
			"fetched before it, while its qemu ticket is still valid; a fresh tunnel .vv opens a session",
		Options:  tunnelLane,
		Requires: []harness.Capability{harness.CapTunnelVV, harness.CapTerminate},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f := fetchTunnelVV(ctx, t, env, vm)
			s, err := harness.DialerFor(f).Connect(ctx)
			require.NoError(t, err, "a session through the tunnel")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)

			start := time.Now()
			require.NoError(t, env.TerminateConsole(ctx, vm), "terminate the console")
			call := time.Since(start)
			took := waitClosed(t, time.Now(), terminateWithin, "the console's terminate", s.Main, display, inputs, cursor)
			t.Logf("terminate call %v; the tunnel's 4 channels closed %v after it returned",
				call.Round(time.Millisecond), took.Round(time.Millisecond))

			// The .vv from before the terminate still holds a qemu ticket
			// that is valid (it expires after the lane's tunnel ticket
			// lifetime), so only the proxy can keep its holder out.
			w := vm.WatchConnections()
			defer w.Close()
			_, err = harness.DialerFor(f).Connect(ctx)
			pe := wantProxyRefused(t, err, "a session from the tunnel .vv fetched before the terminate")
			t.Logf("the earlier .vv: %s", pe.Line)
			nothingReached(ctx, t, "the refused tunnel", w)

			g := fetchTunnelVV(ctx, t, env, vm)
			s2, err := harness.DialerFor(g).Connect(ctx)
			require.NoError(t, err, "a session from a tunnel .vv fetched after the terminate")
			defer s2.Close()
			_, inputs2, _ := openAll(ctx, t, s2)
			require.NoError(t, inputs2.Type("term ok"), "type through the new tunnel")
			waitSerial(ctx, t, vm, `term ok`)
			alive(ctx, t, vm)
		},
	})
}
