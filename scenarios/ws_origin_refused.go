package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

// foreignOrigin is a page of another site.
const foreignOrigin = "http://evil.example"

func init() {
	Register(Scenario{
		Name: "ws-origin-refused",
		Tier: Browser,
		Description: "a WebSocket from a page of another site (a foreign Origin) is refused before anything reaches qemu; " +
			"the gateway's own origin opens a session",
		Requires: append([]harness.Capability{harness.CapWebSocketOrigin}, wsLane...),
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			// A fresh endpoint: only the origin can stop it.
			f := fetchWS(ctx, t, env, vm)
			w := vm.WatchConnections()
			defer w.Close()
			d := harness.DialerFor(f)
			d.Origin = foreignOrigin
			s, err := d.Connect(ctx)
			if err == nil {
				s.Close()
			}
			wantWSRefused(t, err, "a session from "+foreignOrigin)
			nothingReached(ctx, t, "the foreign origin's WebSocket", w)

			g := fetchWS(ctx, t, env, vm)
			s, err = harness.DialerFor(g).Connect(ctx)
			require.NoError(t, err, "a session from the gateway's own origin %q", g.WebSocketOrigin)
			s.Close()
		},
	})
}
