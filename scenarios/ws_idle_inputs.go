package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// wsIdle is the session idle limit the ws-idle-inputs lane asks of a
// proxy the harness configures; wsQuietDefault how long inputs and
// cursor stay quiet against a gateway whose own limit is unknown. 2 s:
// the display must carry a message within the limit, and at 1 s a loaded
// machine stalled the guest's repaint past it now and then.
const (
	wsIdle         = 2 * time.Second
	wsQuietDefault = 2 * time.Second
)

func init() {
	Register(Scenario{
		Name:      "ws-idle-inputs",
		Tier:      Browser,
		Exercises: ProxySPICE,
		Description: "inputs and cursor sockets quiet for longer than the gateway's idle limit while the display paints " +
			"still deliver the next key (a console that looks alive must take keys)",
		Requires: wsLane,
		Options:  []harness.Option{harness.WebSocketIdleTimeout(wsIdle)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			quiet := wsQuietDefault
			if idle := env.WebSocketIdleTimeout(); idle > 0 {
				quiet = idle + idle/2
				t.Logf("the gateway's idle limit: %v; inputs and cursor stay quiet %v", idle, quiet)
			} else {
				t.Logf("the gateway names no idle limit; inputs and cursor stay quiet %v", quiet)
			}
			f := fetchWS(ctx, t, env, vm)
			s, err := harness.DialerFor(f).Connect(ctx)
			require.NoError(t, err, "session over WebSocket")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)

			// The display paints: keys sent to the guest over QMP, not
			// through the inputs socket, are echoed on its screen. Each
			// round waits for a draw; the pacing keeps qemu's 16-scancode
			// PS/2 queue from overflowing. The gateway's idle clock is wall
			// time, and no event says "the limit passed without a cut": the
			// quiet period is waited out, painting all along.
			tick := time.NewTicker(150 * time.Millisecond)
			defer tick.Stop()
			start, draws := time.Now(), 0
			for time.Since(start) < quiet {
				require.NoError(t, vm.SendKeys(ctx, "a"), "a key over QMP")
				for {
					m, err := display.Recv(ctx)
					require.NoError(t, err, "the display while inputs and cursor are quiet")
					if spice.IsDraw(m.Type) {
						draws++
						break
					}
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
					t.Fatalf("painting: %v", context.Cause(ctx))
				}
			}
			t.Logf("%d draws in %v; inputs and cursor carried nothing", draws, time.Since(start).Round(time.Millisecond))
			wantOpen(t, "while inputs and cursor were quiet and the display painted", s.Main, display, inputs, cursor)
			require.NoError(t, inputs.Type("ws7"), "type on the quiet inputs socket")
			waitSerial(ctx, t, vm, `ws7`)
			wantOpen(t, "after the key", cursor)
		},
	})
}
