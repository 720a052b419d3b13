package scenarios

import (
	"context"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "foreign-session",
		Description: "a channel naming a session that is not its token's gets BAD_CONNECTION_ID; nothing reaches qemu",
		Options:     []harness.Option{harness.VMs(2)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			a, b := env.VM(0), env.VM(1)
			sa, fa, err := env.Connect(ctx, harness.Proxy, a)
			check(t, err, "session on vm 1")
			defer sa.Close()
			sb, _, err := env.Connect(ctx, harness.Proxy, b)
			check(t, err, "session on vm 2")
			defer sb.Close()
			// Open every channel type once on both sessions first: the
			// proxy probes a console's caps per channel type on first use
			// (link message only, no ticket), and those probes must not
			// be counted against the refusals below.
			openAll(ctx, t, sa)
			openAll(ctx, t, sb)
			settle(ctx)
			before := spiceConnections(a) + spiceConnections(b)
			// vm 1's token with vm 2's session id.
			_, err = harness.Dialer(fa.File).DialChannel(ctx, sb.ID, spice.ChannelDisplay, 0)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrBadConnectionID)
			// vm 1's token with a made-up id, and with 0.
			_, err = harness.Dialer(fa.File).DialChannel(ctx, sa.ID^0x5a5a5a5a, spice.ChannelInputs, 0)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrBadConnectionID)
			_, err = harness.Dialer(fa.File).DialChannel(ctx, 0, spice.ChannelCursor, 0)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrBadConnectionID)
			settle(ctx)
			if n := spiceConnections(a) + spiceConnections(b) - before; n != 0 {
				t.Errorf("refused channels reached qemu: %d new SPICE connections", n)
			}
			// Both sessions still work.
			if _, err := sa.Open(ctx, spice.ChannelCursor, 0); err != nil {
				t.Errorf("session 1 after the refusals: %v", err)
			}
			if _, err := sb.Open(ctx, spice.ChannelCursor, 0); err != nil {
				t.Errorf("session 2 after the refusals: %v", err)
			}
		},
	})
}
