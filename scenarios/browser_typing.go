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
		Requires: wsLane,
		Needs:    []string{needChromium, needSpiceHTML5},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			p := openPage(ctx, t, env, vm)
			require.NoError(t, p.Type(ctx, "html5 42"), "type into the page")
			if err := waitSerialErr(ctx, vm, `READY> html5 42`); err != nil {
				st, serr := p.State(ctx)
				t.Fatalf("keys typed into the page never reached the guest: %v\nthe page: errors %q, sockets %+v (%v)\nserial tail:\n%s",
					err, st.Errors, st.Sockets, serr, vm.SerialTail(5))
			}
		},
	})
}
