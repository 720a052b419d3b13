package scenarios

import (
	"context"
	"errors"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "wrong-ticket",
		Tier:        Core,
		Exercises:   QemuDirect,
		Description: "qemu refuses a wrong ticket with PERMISSION_DENIED (Go client and spicy-screenshot)",
		Needs:       []string{needScreenshot},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			d := directDialer(vm)
			d.Password = "not-the-ticket"
			_, err := d.Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)

			c := vm.Console()
			ep := harness.Endpoint{Host: c.HypervisorIP, Port: c.InsecurePort, Password: "not-the-ticket"}
			_, err = harness.Screenshot(ctx, ep, env.Dir)
			var ce *harness.ClientError
			if !errors.As(err, &ce) || ce.Event != 23 {
				t.Fatalf("spicy-screenshot with a wrong ticket: got %v, want main channel event 23 (ERROR_AUTH)", err)
			}
			// The right ticket still works after the refusals.
			s, err := directDialer(vm).Connect(ctx)
			require.NoError(t, err, "link with the right ticket")
			s.Close()
		},
	})
}
