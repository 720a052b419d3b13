package scenarios

import (
	"context"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "backend-down",
		Description: "qemu killed mid-session: the client's channels close promptly, and a new link gets an error, not a hang",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			check(t, err, "fetch a second .vv before the kill")
			check(t, vm.Kill(), "kill qemu")
			waitClosed(t, time.Now(), 5*time.Second, "qemu died", s.Main, display, inputs, cursor)
			start := time.Now()
			_, err = harness.Dialer(f.File).Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrLinkGeneric)
			t.Logf("new link to a dead backend refused in %v", time.Since(start))
		},
	})
}
