package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name: "browser-typing",
		Tier: Browser,
		Description: "keys typed into spice-html5 in headless Chromium (DevTools key events on the focused canvas), " +
			"through the WebSocket gateway, reach the guest's serial log",
		Exercises: ProxySPICE,
		Requires:  wsLane,
		Needs:     []string{needChromium, needSpiceHTML5},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			p := openPage(ctx, t, env, vm)
			require.NoError(t, p.Type(ctx, "html5 42"), "type into the page")
			// The keys' echo on the serial log, or the page's first error
			// (a socket closed, say), whichever comes first.
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			pageErr := make(chan error, 1)
			go func() {
				err := p.WaitError(wctx)
				if err != nil {
					cancel()
				}
				pageErr <- err
			}()
			serialErr := waitSerialErr(wctx, vm, `READY> html5 42`)
			cancel()
			if err := <-pageErr; err != nil {
				t.Fatalf("keys typed into the page never reached the guest: %v\nserial tail:\n%s", err, vm.SerialTail(5))
			}
			if serialErr != nil {
				t.Fatalf("keys typed into the page never reached the guest (the page reported nothing): %v\nserial tail:\n%s", serialErr, vm.SerialTail(5))
			}
		},
	})
}
