package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:      "tunnel-remote-viewer",
		Tier:      Core,
		Exercises: ProxySPICE | QemuDirect,
		Description: "remote-viewer opens a tunnel .vv (proxy=, TLS end to end checked against qemu's CA and subject), " +
			"shows the guest's exact pixels and types into it",
		Options:  tunnelLane,
		Requires: []harness.Capability{harness.CapTunnelVV},
		Needs:    []string{needScreenshot, needRemoteViewer, needXvfb, needXdotool, needImport},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			ref, err := env.ScreenshotDirect(ctx, vm)
			require.NoError(t, err, "reference capture straight from qemu")
			opened := tunnelsOpened(ctx, t, env)
			f := fetchTunnelVV(ctx, t, env, vm)
			require.NotZero(t, f.TLSPort, "the tunnel .vv names qemu's TLS port")
			rv, err := env.RemoteViewerVV(ctx, f)
			require.NoError(t, err, "start remote-viewer")
			defer rv.Close()
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			require.NoError(t, rv.WaitOpened(wctx), "remote-viewer opening the tunnel .vv")
			img, err := rv.Capture(wctx, ref.W, ref.H)
			require.NoError(t, err, "capture the viewer window")
			if n := img.DiffPixels(ref); n != 0 {
				t.Errorf("remote-viewer through the tunnel shows %d pixels unlike a direct capture's", n)
			}
			require.NoError(t, rv.Type(wctx, "tun"), "xdotool type")
			waitSerial(ctx, t, vm, `READY> tun`)
			// Where the proxy counts tunnels: remote-viewer's channels went
			// through it (main, display, inputs, cursor at least).
			if n := tunnelsOpened(ctx, t, env) - opened; opened >= 0 && n < 4 {
				t.Errorf("the proxy opened %v tunnels for remote-viewer, want at least 4 (one per channel)", n)
			}
		},
	})
}

// tunnelsOpened is the in-process CONNECT listener's count of tunnels
// opened, or -1 for a target without this repository's metrics.
func tunnelsOpened(ctx context.Context, t harness.T, env *harness.Env) float64 {
	t.Helper()
	if !harness.HasCapability(env.Target(), harness.CapMetrics) {
		return -1
	}
	n, err := env.Metric(ctx, "spice_proxy_connect_requests_total", "result", "ok")
	require.NoError(t, err, "metric spice_proxy_connect_requests_total")
	return n
}
