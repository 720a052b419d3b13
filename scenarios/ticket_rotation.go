package scenarios

import (
	"context"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "ticket-rotation",
		Description: "a new ticket invalidates old direct .vv files while a live proxy session keeps working",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			old, err := env.FetchVV(ctx, harness.Direct, vm)
			check(t, err, "fetch direct .vv")
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "proxy session")
			defer s.Close()
			_, i, _ := openAll(ctx, t, s)

			newTicket, err := env.SetTicket(ctx, vm)
			check(t, err, "new ticket")
			if newTicket == old.Password {
				t.Fatalf("the ticket did not change")
			}
			// The old direct .vv no longer opens anything.
			_, err = harness.Dialer(old.File).Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)
			// The live session still types into the guest and can open
			// channels (the proxy links them with the new ticket).
			check(t, i.Type("rot"), "type through the live session")
			waitSerial(ctx, t, vm, `rot`)
			if _, err := s.Open(ctx, spice.ChannelCursor, 0); err != nil {
				t.Errorf("opening a channel of the live session after rotation: %v", err)
			}
			// The new direct .vv carries the new ticket.
			cur, err := env.FetchVV(ctx, harness.Direct, vm)
			check(t, err, "fetch direct .vv again")
			if cur.Password != newTicket {
				t.Errorf("direct .vv still serves the old ticket")
			}
		},
	})
}
