package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

// The browser oracle's programs: Chromium, and spice-html5's modules
// (a directory: Missing checks the file).
const (
	needChromium   = "chromium:chromium"
	needSpiceHTML5 = harness.SpiceHTML5Dir + "/main.js:spice-html5"
)

// paintWithin bounds a page's first paint: Chromium's start, the page's
// load, four WebSockets and their links (about 1–5 s on a loaded 2-CPU
// machine).
const paintWithin = 30 * time.Second

// openPage fetches vm's WebSocket endpoint and opens spice-html5 on it in
// the lane's browser (the lane keeps a screenshot of it if the scenario
// fails), then waits for the first painted canvas.
func openPage(ctx context.Context, t harness.T, env *harness.Env, vm *harness.VM) *harness.Page {
	t.Helper()
	f := fetchWS(ctx, t, env, vm)
	p, err := env.OpenPage(ctx, harness.WebSocketEndpointOf(f))
	require.NoError(t, err, "open spice-html5 in Chromium")
	wctx, cancel := context.WithTimeout(ctx, paintWithin)
	defer cancel()
	first, err := p.WaitPainted(wctx)
	require.NoError(t, err, "spice-html5's first painted canvas through %s", env.Target().Name())
	t.Logf("first painted canvas %v after spice-html5 connected", first.Round(time.Millisecond))
	return p
}
