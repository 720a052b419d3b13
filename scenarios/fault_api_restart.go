package scenarios

import (
	"context"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "fault-api-restart",
		Description: "the .vv API restarted while a session lives: the session keeps relaying, and terminate through the new API ends it",
		Internal:    true,
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			check(t, inputs.Type("before"), "type")
			waitSerial(ctx, t, vm, `before`)

			start := time.Now()
			check(t, env.RestartAPI(ctx), "restart the API")
			t.Logf("API restarted in %v", time.Since(start).Round(time.Millisecond))
			check(t, inputs.Type("after"), "type after the restart")
			waitSerial(ctx, t, vm, `beforeafter`)
			c2, err := s.Open(ctx, spice.ChannelCursor, 0)
			check(t, err, "open a channel after the restart")

			start = time.Now()
			check(t, env.Terminate(ctx, sessionIDFromTitle(f.Title)), "terminate through the new API")
			took := waitClosed(t, start, time.Second, "terminate through the restarted API", s.Main, display, inputs, cursor, c2)
			t.Logf("terminate through the restarted API: all channels closed in %v", took.Round(time.Millisecond))
			alive(ctx, t, vm)

			s2, _, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "a new session through the new API")
			defer s2.Close()
			openAll(ctx, t, s2)
		},
	})
}
