package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name: "browser-banner",
		Tier: Browser,
		Description: "spice-html5 in headless Chromium, through the WebSocket gateway, shows the guest's screen: " +
			"its canvas, and the page as Chromium draws it, equal spicy-screenshot's picture of the same screen",
		Exercises: ProxySPICE | QemuDirect,
		Requires:  wsLane,
		Needs:     []string{needChromium, needSpiceHTML5, needScreenshot},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			// First: a gateway that relays bytes gets a fresh qemu ticket
			// per endpoint, which the capture's own ticket would replace.
			ref, err := env.ScreenshotDirect(ctx, vm)
			require.NoError(t, err, "reference capture (spicy-screenshot straight to qemu)")
			p := openPage(ctx, t, env, vm)
			// The first paint may be part of the screen: read after each
			// draw until the picture is the guest's, or the bound.
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			img, err := p.WaitCanvas(wctx, func(img *harness.Image) bool { return img.DiffPixels(ref) == 0 })
			if err != nil {
				n := -1
				if img != nil {
					n = img.DiffPixels(ref)
				}
				t.Fatalf("the page's canvas never showed spicy-screenshot's picture (%d of %dx%d pixels differ at the last draw): %v", n, ref.W, ref.H, err)
			}
			vis, err := p.Visible(ctx)
			require.NoError(t, err, "screenshot of the page")
			if n := vis.DiffPixels(ref); n != 0 {
				t.Errorf("the page as Chromium shows it: %d of %dx%d pixels unlike spicy-screenshot's", n, ref.W, ref.H)
			}
			require.NoError(t, p.Err(ctx), "the page reports an error on a console it shows")
		},
	})
}
