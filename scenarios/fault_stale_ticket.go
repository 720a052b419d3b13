package scenarios

import (
	"context"
	"errors"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "fault-stale-ticket",
		Description: "qemu's ticket changed behind the proxy's back: the Go client gets PERMISSION_DENIED as link result and spicy-screenshot ERROR_AUTH; once the sources know the new ticket, links work again",
		Needs:       []string{needScreenshot},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			// A new ticket on qemu only: the proxy's store (or an
			// external proxy's sources.yaml) keeps the old one.
			_, err := vm.SetTicket(ctx)
			check(t, err, "set a ticket on qemu behind the proxy's back")

			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			check(t, err, "fetch a proxy .vv")
			_, err = harness.Dialer(f.File).Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)

			_, err = env.ScreenshotProxy(ctx, vm)
			var ce *harness.ClientError
			if !errors.As(err, &ce) || ce.Event != 23 {
				t.Fatalf("spicy-screenshot through the proxy with a stale ticket: got %v, want main channel event 23 (ERROR_AUTH)", err)
			}
			alive(ctx, t, vm)

			// The lane learns the ticket (store and sources.yaml).
			_, err = env.SetTicket(ctx, vm)
			check(t, err, "set a fresh ticket through the lane")
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "a new session once the ticket is known")
			s.Close()
			if !env.External() {
				// Our proxy does not burn a token on a backend refusal:
				// the first .vv still opens its session.
				s, err = harness.Dialer(f.File).Connect(ctx)
				check(t, err, "the token refused by qemu, once the ticket is known")
				s.Close()
			}
		},
	})
}
