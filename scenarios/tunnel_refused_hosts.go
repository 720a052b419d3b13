package scenarios

import (
	"context"
	"errors"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name: "tunnel-refused-hosts",
		Tier: Hardening,
		Description: "a tampered signed host, qemu's plain address and an expired host each get 403 from the CONNECT proxy " +
			"(Go client and spicy-screenshot), and nothing reaches qemu",
		Options:  tunnelLane,
		Requires: []harness.Capability{harness.CapTunnelVV, harness.CapSignedHosts},
		Needs:    []string{needScreenshot},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f := fetchTunnelVV(ctx, t, env, vm)
			w := vm.WatchConnections()
			defer w.Close()
			refused := func(what, host string) {
				t.Helper()
				d := harness.DialerFor(f)
				d.Host = host
				_, err := d.Connect(ctx)
				pe := wantProxyRefused(t, err, what+", Go client")
				require.Equal(t, 403, pe.Status, "%s: the proxy's status (%s)", what, pe.Line)
				ep := harness.EndpointOf(f.File)
				ep.Host = host
				_, err = harness.Screenshot(ctx, ep, env.Dir)
				var ce *harness.ClientError
				require.ErrorAs(t, err, &ce, "%s: spicy-screenshot must fail", what)
				t.Logf("%s: %s; spicy-screenshot: %s", what, pe.Line, ce.Status)
			}
			refused("a tampered host", tampered(f.Host))
			refused("qemu's own address", vm.Console().HypervisorIP)

			// Expired: the proxy's clock moves past the host's lifetime
			// (or, for a proxy whose clock the test cannot move, the
			// lifetime is waited out).
			sh, err := harness.Cap[harness.SignedHoster](env, harness.CapSignedHosts)
			require.NoError(t, err)
			past := sh.TunnelHostTTL() + time.Second
			if err := sh.AdvanceTunnelClock(past); errors.Is(err, harness.ErrUnsupported) {
				until(ctx, t, time.Now().Add(past))
			} else {
				require.NoError(t, err, "advance the tunnel clock")
			}
			refused("an expired host", f.Host)
			nothingReached(ctx, t, "the refused tunnels", w)

			// A fresh .vv opens a tunnel at once.
			s, _, err := env.Connect(ctx, harness.Tunnel, vm)
			require.NoError(t, err, "a session from a fresh tunnel .vv")
			s.Close()
		},
	})
}
