package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:      "tunnel-pixels-equal-direct",
		Tier:      Core,
		Exercises: ProxySPICE | QemuDirect,
		Description: "spicy-screenshot through the CONNECT proxy (SPICE_PROXY, the tunnel .vv's host and TLS port) " +
			"captures the same picture as straight from qemu",
		Options:  tunnelLane,
		Requires: []harness.Capability{harness.CapTunnelVV},
		Needs:    []string{needScreenshot},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			direct, err := env.ScreenshotDirect(ctx, vm)
			require.NoError(t, err, "direct capture")
			require.False(t, direct.Blank(), "the direct capture is blank: the guest did not draw")
			opened := tunnelsOpened(ctx, t, env)
			f := fetchTunnelVV(ctx, t, env, vm)
			img, err := env.ScreenshotVV(ctx, f.File)
			require.NoError(t, err, "spicy-screenshot through the tunnel")
			if n := direct.DiffPixels(img); n != 0 {
				t.Fatalf("captures differ in %d pixels (direct %dx%d, tunnel %dx%d)", n, direct.W, direct.H, img.W, img.H)
			}
			if n := tunnelsOpened(ctx, t, env) - opened; opened >= 0 && n < 2 {
				t.Errorf("the proxy opened %v tunnels for spicy-screenshot, want at least 2 (main and display)", n)
			}
		},
	})
}
