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
		Exercises:   ProxySPICE,
		Requires:    []harness.Capability{harness.CapTerminatesSPICE},
		Description: "a channel naming a session that is not its token's is refused (any link error, or a close); nothing reaches qemu; both sessions still work",
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
			// vm 1's token (its session live) naming other sessions. Each
			// try is judged on its own: one that links does not hide the
			// others, nor the barrier below.
			for _, try := range []struct {
				what   string
				connID uint32
				typ    spice.ChannelType
			}{
				{"vm 1's token naming vm 2's session (display)", sb.ID, spice.ChannelDisplay},
				{"vm 1's token naming a made-up session id (inputs)", sa.ID ^ 0x5a5a5a5a, spice.ChannelInputs},
				{"vm 1's token with connection id 0 (cursor)", 0, spice.ChannelCursor},
			} {
				ch, err := harness.DialerFor(fa).DialChannel(ctx, try.connID, try.typ, 0)
				if wantRefusedLink(t, ch, err, try.what) {
					ownCode(t, env, err, spice.ErrBadConnectionID, try.what)
				}
			}
			nothingReached(ctx, t, "the refused channels", wa, wb)
			// Both sessions still work.
			_, err = sa.Open(ctx, spice.ChannelCursor, 0)
			assert.NoError(t, err, "session 1 after the refusals")
			_, err = sb.Open(ctx, spice.ChannelCursor, 0)
			assert.NoError(t, err, "session 2 after the refusals")
		},
	})
}
