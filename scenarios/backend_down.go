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
		Description: "qemu killed mid-session: the client's channels close promptly, and a new link gets a link error, not a hang",
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
			// spice-gtk reports any link error as a failure at once; what it
			// cannot handle is a link answered OK and then a dead socket, or
			// silence.
			lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			_, err = harness.DialerFor(f).Connect(lctx)
			le := wantRefused(t, err, "a new link to a dead backend")
			t.Logf("new link to a dead backend refused with %v at %s in %v", le.Code, le.Step, time.Since(start))
		},
	})
}
