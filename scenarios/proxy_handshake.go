package scenarios

import (
	"context"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "proxy-handshake",
		Tier:        Core,
		Exercises:   ProxySPICE,
		Description: "a proxy .vv's credential links main through the proxy to qemu's session; the .vv never carries qemu's ticket",
		Requires:    []harness.Capability{harness.CapTerminatesSPICE},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			w := vm.WatchConnections()
			defer w.Close()
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "link main through the proxy")
			defer s.Close()
			if f.TLSPort != 0 {
				assert.True(t, s.Main.Secure, "the .vv has a tls-port, but main did not end up on TLS")
			}
			reached, err := w.Barrier(ctx)
			require.NoError(t, err, "barrier")
			assert.NotEmpty(t, reached, "qemu reported no SPICE connection for the proxied session")
			info, err := vm.QuerySpice(ctx)
			require.NoError(t, err, "query-spice")
			assert.NotEmpty(t, info.Channels, "qemu lists no connected channel")
			// The ticket never reaches the client: only the proxy's own
			// credential does.
			assert.NotEqual(t, vm.Console().Ticket, f.Password, "the proxy .vv carries qemu's ticket")
		},
	})
}
