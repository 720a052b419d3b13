package scenarios

import (
	"context"
	"strings"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "two-vms-isolated",
		Tier:        Hardening,
		Requires:    []harness.Capability{harness.CapTerminatesSPICE},
		Description: "a token for one VM reaches that VM only; the other VM's token (in a session of its own) cannot join its session, and nothing reaches qemu",
		Options:     []harness.Option{harness.VMs(2)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			a, b := env.VM(0), env.VM(1)
			sa, fa, err := env.Connect(ctx, harness.Proxy, a)
			require.NoError(t, err, "session on vm 1")
			defer sa.Close()
			_, in, _ := openAll(ctx, t, sa)
			require.NoError(t, in.Type("only-a"), "type")
			waitSerial(ctx, t, a, `only-a`)
			// vm 2's serial is current once a key sent to it now shows.
			require.NoError(t, b.SendKeys(ctx, "z"), "a key into vm 2 over QMP")
			waitSerial(ctx, t, b, `READY> z`)
			assert.False(t, strings.Contains(b.SerialTail(5), "only-a"), "keys for vm 1 reached vm 2")
			infoB, err := b.QuerySpice(ctx)
			require.NoError(t, err, "query-spice vm 2")
			assert.Empty(t, infoB.Channels, "vm 2 has SPICE channels though only vm 1 was opened")
			// vm 2's token, with a session of its own, cannot join vm 1's.
			sb, fb, err := env.Connect(ctx, harness.Proxy, b)
			require.NoError(t, err, "session on vm 2")
			defer sb.Close()
			wa, wb := a.WatchConnections(), b.WatchConnections()
			defer wa.Close()
			defer wb.Close()
			_, err = harness.DialerFor(fb).DialChannel(ctx, sa.ID, spice.ChannelDisplay, 0)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrBadConnectionID)
			nothingReached(ctx, t, "vm 2's token naming vm 1's session", wa, wb)
			// vm 1's own token still joins vm 1's session.
			c, err := harness.DialerFor(fa).DialChannel(ctx, sa.ID, spice.ChannelCursor, 0)
			require.NoError(t, err, "vm 1's token joining its own session after the refusal")
			c.Close()
		},
	})
}
