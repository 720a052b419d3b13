package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "pixels-proxy-equal-direct",
		Tier:        Core,
		Description: "spicy-screenshot through the proxy (TLS) gives the same picture as straight from qemu",
		Needs:       []string{needScreenshot},
		Requires:    []harness.Capability{harness.CapSPICEClients}, // spice-gtk speaks no WebSocket
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			direct, err := env.ScreenshotDirect(ctx, vm)
			require.NoError(t, err, "direct capture")
			proxied, err := env.ScreenshotProxy(ctx, vm)
			require.NoError(t, err, "capture through the proxy")
			if direct.Blank() {
				t.Fatalf("direct capture is blank (%dx%d): the guest did not draw", direct.W, direct.H)
			}
			if n := direct.DiffPixels(proxied); n != 0 {
				t.Fatalf("captures differ in %d pixels (direct %dx%d, proxy %dx%d)", n, direct.W, direct.H, proxied.W, proxied.H)
			}
		},
	})
}
