package scenarios

import (
	"context"
	"strings"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "remote-viewer-proxy",
		Tier:        Core,
		Description: "remote-viewer opens a proxy .vv (TLS, CA embedded), shows the guest's exact pixels and types into it",
		Needs:       []string{needScreenshot, needRemoteViewer, needXvfb, needXdotool, needImport},
		Requires:    []harness.Capability{harness.CapSPICEClients}, // spice-gtk speaks no WebSocket
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			ref, err := env.ScreenshotDirect(ctx, vm)
			require.NoError(t, err, "reference capture")
			rv, err := env.RemoteViewer(ctx, harness.Proxy, vm)
			require.NoError(t, err, "start remote-viewer")
			defer rv.Close()
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			require.NoError(t, rv.WaitOpened(wctx), "remote-viewer opening the .vv")
			if !strings.Contains(rv.Log(), "main channel: opened") {
				t.Errorf("no \"main channel: opened\" in remote-viewer's log")
			}
			img, err := rv.Capture(wctx, ref.W, ref.H)
			require.NoError(t, err, "capture the viewer window")
			if n := img.DiffPixels(ref); n != 0 {
				t.Errorf("remote-viewer shows %d pixels unlike spicy-screenshot's", n)
			}
			require.NoError(t, rv.Type(wctx, "rv"), "xdotool type")
			waitSerial(ctx, t, vm, `READY> rv`)
		},
	})
}
