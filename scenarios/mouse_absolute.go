package scenarios

import (
	"context"
	"math"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

func init() {
	Register(Scenario{
		Name:        "mouse-absolute",
		Tier:        Channels,
		Exercises:   ProxySPICE,
		Description: "client mouse mode through the proxy: MOUSE_POSITIONs reach the guest's USB tablet as absolute evdev positions",
		// One head and no agent: spice-server offers client mouse mode
		// through the tablet only with exactly one display channel (with
		// an agent it goes through the agent instead).
		Options: []harness.Option{harness.LinuxGuest(), harness.Channels(qemu.Tablet())},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			// qemu offers client mode once the guest's driver took the
			// tablet (its USB enumeration may end after the ready line).
			guestWant(ctx, t, vm, 30*time.Second, "the USB tablet", guestproto.TypeUSB, "action", "add", "product", "QEMU USB Tablet")
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "main through the proxy")
			defer s.Close()
			in, err := s.OpenInputs(ctx)
			require.NoError(t, err, "inputs through the proxy")
			d, err := s.OpenDisplay(ctx, 0)
			require.NoError(t, err, "display through the proxy")
			_, err = d.WaitFor(ctx, spice.MsgDisplaySurfaceCreate)
			require.NoError(t, err, "the display's surface")
			// spice-server announces a change of the modes it supports
			// in MOUSE_MODE on main.
			mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err = s.WaitMouseModeSupported(mctx, spice.MouseModeClient)
			cancel()
			if err != nil {
				sup, _ := s.MouseMode()
				t.Fatalf("qemu offers no client mouse mode through the proxy 10 s after the tablet came (supported modes %#x): the tablet needs one display channel (%v)", sup, err)
			}
			require.NoError(t, s.RequestMouseMode(ctx, spice.MouseModeClient), "client mouse mode")
			sc := d.Surface()
			x, y := sc.Width/4, sc.Height/4
			since := lastGuestEvent(t, vm)
			// No guest event says when its agent opened the tablet's evdev
			// node (USB enumeration may end after the ready line) and evdev
			// drops what comes before: the position goes again every
			// second, one pixel apart so the kernel never drops it as a
			// repeat, until the guest reports one.
			var ev guestproto.Event
			deadline := time.Now().Add(30 * time.Second)
			for i := uint32(0); ; i++ {
				require.NoError(t, in.Position(ctx, x+i%2, y, 0), "MOUSE_POSITION")
				wctx, cancel := context.WithTimeout(ctx, time.Second)
				ev, err = vm.GuestEvent(wctx, guestproto.TypeMouse, func(e guestproto.Event) bool { return e.T > since && e.Value("x") != "" })
				cancel()
				if err == nil {
					break
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					t.Fatalf("no absolute tablet position in the guest 30 s after the first MOUSE_POSITION: %v", err)
				}
			}
			gx, _ := ev.Int("x")
			gy, _ := ev.Int("y")
			// The tablet spans 0..32767 over the surface: a quarter of the
			// way is about 8191 (within 64, a pixel of rounding and more).
			if math.Abs(float64(gx)-32767/4) > 64 || math.Abs(float64(gy)-32767/4) > 64 {
				t.Errorf("position (%d, %d) of a %dx%d surface reached the tablet as (%d, %d), want about (8191, 8191)", x, y, sc.Width, sc.Height, gx, gy)
			}
			t.Logf("position (%d, %d) → tablet %s", x, y, ev)
		},
	})
}
