package scenarios

import (
	"context"
	"net"
	"strconv"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name: "tunnel-foreign-port",
		Tier: Hardening,
		Description: "CONNECT with the tunnel .vv's host to a port that is not the console's (a listener of the test's, " +
			"qemu's plain port the .vv does not name) is refused, and nothing reaches either; the .vv's own port still opens",
		Options:  tunnelLane,
		Requires: []harness.Capability{harness.CapTunnelVV},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f := fetchTunnelVV(ctx, t, env, vm)
			c := vm.Console()
			require.NotZero(t, f.TLSPort, "the tunnel .vv names qemu's TLS port")
			require.Zero(t, f.Port, "the tunnel .vv names qemu's plain port too")

			ln, err := net.Listen("tcp", net.JoinHostPort(c.HypervisorIP, "0"))
			require.NoError(t, err, "a foreign listener")
			defer ln.Close()
			foreign := ln.Addr().(*net.TCPAddr).Port
			w := vm.WatchConnections()
			defer w.Close()
			for _, port := range []int{foreign, c.InsecurePort} {
				err := connectVia(ctx, f, net.JoinHostPort(f.Host, strconv.Itoa(port)))
				pe := wantProxyRefused(t, err, "CONNECT to port "+strconv.Itoa(port))
				t.Logf("CONNECT to port %d: %s", port, pe.Line)
			}
			firstAccepted(ctx, t, ln, "the refused CONNECT")
			nothingReached(ctx, t, "the refused CONNECT to qemu's plain port", w)

			// The port the .vv names opens, with its ticket.
			s, err := harness.DialerFor(f).Connect(ctx)
			require.NoError(t, err, "a session on the .vv's own port after the refusals")
			s.Close()
		},
	})
}
