package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "banner-through-proxy",
		Tier:        Core,
		Description: "the guest's banner shows through the proxy, and typing reaches the guest",
		Needs:       []string{needScreenshot},                      // programs beyond qemu
		Requires:    []harness.Capability{harness.CapSPICEClients}, // spice-gtk speaks no WebSocket
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			img, err := env.ScreenshotProxy(ctx, vm) // spicy-screenshot, single-use token
			require.NoError(t, err, "capture through the proxy")
			require.False(t, img.Blank(), "blank screen")
			s, _, err := env.Connect(ctx, harness.Proxy, vm) // fetch console.vv, link main
			require.NoError(t, err, "session")
			defer s.Close()
			_, inputs, _ := openAll(ctx, t, s) // display (first draw), inputs, cursor
			require.NoError(t, inputs.Type("hello"), "type")
			waitSerial(ctx, t, vm, `READY> hello`)
		},
	})
}
