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
		Name: "fault-stale-ticket",
		Tier: Hardening,
		Description: "qemu's ticket changed behind the proxy's back: the Go client gets PERMISSION_DENIED as its link result and spicy-screenshot " +
			"ERROR_AUTH (the proxy answers only after qemu did); once the sources know the new ticket, links work again",
		Needs:    []string{needScreenshot},
		Requires: []harness.Capability{harness.CapTerminatesSPICE},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			// A new ticket on qemu only: the proxy (its store or its
			// sources.yaml) keeps the old one.
			_, err := vm.SetTicket(ctx)
			require.NoError(t, err, "set a ticket on qemu behind the proxy's back")

			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			require.NoError(t, err, "fetch a proxy .vv")
			_, err = harness.DialerFor(f).Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)

			_, err = env.ScreenshotProxy(ctx, vm)
			var ce *harness.ClientError
			if !errors.As(err, &ce) || ce.Event != 23 {
				t.Fatalf("spicy-screenshot through the proxy with a stale ticket: got %v, want main channel event 23 (ERROR_AUTH)", err)
			}
			alive(ctx, t, vm)

			// The lane's sources learn the ticket; the target loads them.
			_, err = env.SetTicket(ctx, vm)
			require.NoError(t, err, "set a fresh ticket through the lane")
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "a new session once the ticket is known")
			s.Close()
		},
	})
}
