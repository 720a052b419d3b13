package scenarios

import (
	"context"
	"errors"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "wrong-ticket",
		Description: "qemu refuses a wrong ticket with PERMISSION_DENIED (Go client and spicy-screenshot)",
		Needs:       []string{needScreenshot},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f, err := env.FetchVV(ctx, harness.Direct, vm)
			check(t, err, "fetch direct .vv")
			d := harness.Dialer(f.File)
			d.Password = "not-the-ticket"
			_, err = d.Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)

			ep := harness.EndpointOf(f.File)
			ep.Password = "not-the-ticket"
			_, err = harness.Screenshot(ctx, ep, env.Dir)
			var ce *harness.ClientError
			if !errors.As(err, &ce) || ce.Event != 23 {
				t.Fatalf("spicy-screenshot with a wrong ticket: got %v, want main channel event 23 (ERROR_AUTH)", err)
			}
			// The right ticket still works after the refusals.
			s, err := harness.Dialer(f.File).Connect(ctx)
			check(t, err, "link with the right ticket")
			s.Close()
		},
	})
}
