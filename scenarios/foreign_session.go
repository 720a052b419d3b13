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
		Name:        "foreign-session",
		Tier:        Hardening,
		Requires:    []harness.Capability{harness.CapTerminatesSPICE},
		Description: "a channel naming a session that is not its token's gets BAD_CONNECTION_ID; nothing reaches qemu",
		Options:     []harness.Option{harness.VMs(2)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			a, b := env.VM(0), env.VM(1)
			sa, fa, err := env.Connect(ctx, harness.Proxy, a)
			require.NoError(t, err, "session on vm 1")
			defer sa.Close()
			sb, _, err := env.Connect(ctx, harness.Proxy, b)
			require.NoError(t, err, "session on vm 2")
			defer sb.Close()
			// Open every channel type once on both sessions first, so the
			// sessions are complete before the refusals.
			openAll(ctx, t, sa)
			openAll(ctx, t, sb)
			wa, wb := a.WatchConnections(), b.WatchConnections()
			defer wa.Close()
			defer wb.Close()
			// vm 1's token with vm 2's session id.
			_, err = harness.DialerFor(fa).DialChannel(ctx, sb.ID, spice.ChannelDisplay, 0)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrBadConnectionID)
			// vm 1's token with a made-up id, and with 0.
			_, err = harness.DialerFor(fa).DialChannel(ctx, sa.ID^0x5a5a5a5a, spice.ChannelInputs, 0)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrBadConnectionID)
			_, err = harness.DialerFor(fa).DialChannel(ctx, 0, spice.ChannelCursor, 0)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrBadConnectionID)
			nothingReached(ctx, t, "the refused channels", wa, wb)
			// Both sessions still work.
			_, err = sa.Open(ctx, spice.ChannelCursor, 0)
			assert.NoError(t, err, "session 1 after the refusals")
			_, err = sb.Open(ctx, spice.ChannelCursor, 0)
			assert.NoError(t, err, "session 2 after the refusals")
		},
	})
}
