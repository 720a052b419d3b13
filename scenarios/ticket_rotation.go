package scenarios

import (
	"context"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "ticket-rotation",
		Tier:        Core,
		Exercises:   ProxySPICE | ProxyAPI | QemuDirect,
		Requires:    []harness.Capability{harness.CapTerminatesSPICE},
		Description: "a new ticket invalidates the old one while a live proxy session keeps working; the proxy links new channels with the new ticket",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			old := directDialer(vm) // the ticket of now
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "proxy session")
			defer s.Close()
			_, i, _ := openAll(ctx, t, s)

			newTicket, err := env.SetTicket(ctx, vm)
			require.NoError(t, err, "new ticket")
			require.NotEqual(t, old.Password, newTicket, "the ticket did not change")
			// The old ticket no longer opens anything.
			_, err = old.Connect(ctx)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrPermissionDenied)
			// The live session still types into the guest and can open
			// channels (the proxy links them with the new ticket).
			require.NoError(t, i.Type("rot"), "type through the live session")
			waitSerial(ctx, t, vm, `rot`)
			_, err = s.Open(ctx, spice.ChannelCursor, 0)
			assert.NoError(t, err, "opening a channel of the live session after rotation")
			// A new proxy session works with the new ticket.
			s2, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "a new proxy session after rotation")
			s2.Close()
			if harness.HasCapability(env.Target(), harness.CapDirectVV) {
				cur, err := env.FetchVV(ctx, harness.Direct, vm)
				require.NoError(t, err, "fetch direct .vv")
				assert.Equal(t, newTicket, cur.Password, "the direct .vv serves the new ticket")
			}
		},
	})
}
