package scenarios

import (
	"context"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	const ttl = time.Second
	Register(Scenario{
		Name:        "token-expired",
		Description: "a token past its lifetime is refused with PERMISSION_DENIED; nothing reaches qemu",
		Options:     []harness.Option{harness.TokenTTL(ttl)},
		Internal:    true, // the lifetime is this harness's setting
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			// Warm up: a session proves the lane works and lets the
			// proxy's caps probes finish before counting connections.
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "warm-up session")
			s.Close()
			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			check(t, err, "fetch proxy .vv")
			time.Sleep(ttl + 500*time.Millisecond)
			settle(ctx)
			before := spiceConnections(vm)
			_, err = harness.Dialer(f.File).Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)
			settle(ctx)
			if n := spiceConnections(vm) - before; n != 0 {
				t.Errorf("the expired token reached qemu: %d new SPICE connections", n)
			}
		},
	})
}
