package scenarios

import (
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "backend-down",
		Tier:        Hardening,
		Exercises:   ProxySPICE,
		Description: "qemu killed mid-session: the client's channels close promptly, and a new link is refused (a link error or a close before OK), not answered OK or left hanging",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			require.NoError(t, err, "fetch a second .vv before the kill")
			require.NoError(t, vm.Kill(), "kill qemu")
			waitClosed(t, time.Now(), 10*time.Second, "qemu died", s.Main, display, inputs, cursor)
			start := time.Now()
			// spice-gtk reports any link error, or a close before the OK
			// result, as a failure at once; what it cannot handle is a link
			// answered OK and then a dead socket, or silence.
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			s2, err := harness.DialerFor(f).Connect(lctx)
			if wantRefusedSession(t, s2, err, "a new link to a dead backend") {
				t.Logf("new link to a dead backend refused in %v", time.Since(start).Round(time.Millisecond))
			}
		},
	})
}
