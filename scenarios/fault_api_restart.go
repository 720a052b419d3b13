package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "fault-api-restart",
		Tier:        Hardening,
		Exercises:   ProxySPICE | ProxyAPI,
		Description: "the .vv API restarted while a session lives: the session keeps relaying, and terminate through the new API ends it",
		Requires:    []harness.Capability{harness.CapAPIRestart, harness.CapTerminate},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			require.NoError(t, inputs.Type("before"), "type")
			waitSerial(ctx, t, vm, `before`)

			start := time.Now()
			require.NoError(t, env.RestartAPI(ctx), "restart the API")
			t.Logf("API restarted in %v", time.Since(start).Round(time.Millisecond))
			require.NoError(t, inputs.Type("after"), "type after the restart")
			waitSerial(ctx, t, vm, `beforeafter`)
			c2, err := s.Open(ctx, spice.ChannelCursor, 0)
			require.NoError(t, err, "open a channel after the restart")

			id, err := env.SessionID(ctx, f)
			require.NoError(t, err, "the session of the .vv")
			require.NoError(t, env.Terminate(ctx, id), "terminate through the new API")
			took := waitClosed(t, time.Now(), terminateWithin, "terminate through the restarted API", s.Main, display, inputs, cursor, c2)
			t.Logf("terminate through the restarted API: all channels closed %v after it returned", took.Round(time.Millisecond))
			alive(ctx, t, vm)

			s2, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "a new session through the new API")
			defer s2.Close()
			openAll(ctx, t, s2)
		},
	})
}
