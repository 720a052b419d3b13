package scenarios

import (
	"context"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "token-replay",
		Description: "a used token opens no second session; nothing reaches qemu",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "first session")
			defer s.Close()
			settle(ctx)
			before := spiceConnections(vm)
			_, err = harness.Dialer(f.File).Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)
			settle(ctx)
			if n := spiceConnections(vm) - before; n != 0 {
				t.Errorf("the replayed token reached qemu: %d new SPICE connections", n)
			}
			// The first session is untouched.
			if _, err := s.Open(ctx, spice.ChannelCursor, 0); err != nil {
				t.Errorf("first session broken by the replay: %v", err)
			}
		},
	})
}
