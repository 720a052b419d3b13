package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name: "ws-session",
		Tier: Browser,
		Description: "a whole Go-client session through the WebSocket gateway, a socket per channel as spice-html5 opens them: " +
			"main, display to its first draw, inputs (keys reach the guest's serial) and cursor",
		Requires: wsLane,
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f := fetchWS(ctx, t, env, vm)
			s, err := harness.DialerFor(f).Connect(ctx)
			require.NoError(t, err, "main channel over WebSocket")
			defer s.Close()
			_, inputs, _ := openAll(ctx, t, s)
			require.NoError(t, inputs.Type("ws 42"), "type")
			waitSerial(ctx, t, vm, `READY> ws 42`)
		},
	})
}
