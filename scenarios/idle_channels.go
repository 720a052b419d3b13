package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// idleLimit is the idle limit the idle-channels lane asks of the proxy,
// and idleQuiet how long its inputs and cursor stay quiet: three limits,
// seconds instead of the hours a user watching a video keeps them quiet.
const (
	idleLimit = 2 * time.Second
	idleQuiet = 6 * time.Second
)

func init() {
	Register(Scenario{
		Name:        "idle-channels",
		Tier:        Channels,
		Exercises:   ProxySPICE,
		Description: "a session's inputs and cursor channels, quiet for three idle limits while its display paints, survive: a key typed afterwards reaches the guest",
		// A short idle limit makes "a long quiet period" seconds long; a
		// target that cannot set one keeps its own (the check then
		// proves less, and still passes for a good proxy).
		Options: everyChannelLane(harness.IdleTimeout(idleLimit)),
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			guestCommand(ctx, t, vm, guestproto.CmdDraw, "head", "0")
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "main through the proxy")
			defer s.Close()
			d, err := s.OpenDisplay(ctx, 0)
			require.NoError(t, err, "display:0 through the proxy")
			_, _, err = screenDigest(ctx, d)
			require.NoError(t, err, "display:0's first picture")
			in, err := s.OpenInputs(ctx)
			require.NoError(t, err, "inputs through the proxy")
			_, err = in.WaitFor(ctx, spice.MsgInputsInit)
			require.NoError(t, err, "INPUTS_INIT")
			cursor, err := s.Open(ctx, spice.ChannelCursor, 0)
			require.NoError(t, err, "cursor through the proxy")
			_, err = cursor.WaitFor(ctx, spice.MsgCursorInit)
			require.NoError(t, err, "CURSOR_INIT")
			// The session stays in use: the guest repaints a small region
			// five times a second (small lossless draws, no stream) for
			// idleQuiet, while inputs, cursor and main carry nothing.
			frames := int(idleQuiet / (200 * time.Millisecond))
			start := time.Now()
			guestCommand(ctx, t, vm, guestproto.CmdAnimate, "head", "0", "frames", itoa(frames), "fps", "5", "w", "64", "h", "48")
			quiet := time.Since(start)
			wantOpen(t, "after "+quiet.Round(time.Millisecond).String()+" of quiet inputs and cursor while the display painted", s.Main, in.Channel, cursor)
			// The positive barrier: a key on the quiet inputs channel
			// reaches the guest's keyboard.
			since := lastGuestEvent(t, vm)
			require.NoError(t, in.Type("a"), "a key on the quiet inputs channel")
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = vm.GuestEvent(wctx, guestproto.TypeKey, func(e guestproto.Event) bool {
				return e.T > since && e.Value("code") == "30" && e.Value("value") == "1" // KEY_A pressed
			})
			cancel()
			require.NoError(t, err, "the key typed on inputs after %v of quiet (idle limit asked: %v) did not reach the guest", quiet, idleLimit)
			wantOpen(t, "after the key", cursor)
		},
	})
}
