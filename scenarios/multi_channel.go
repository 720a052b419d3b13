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
		Name:        "multi-channel",
		Tier:        Hardening,
		Exercises:   ProxySPICE | QemuDirect,
		Description: "main, display (first draw), inputs and cursor of one session through the proxy, with qemu's real caps",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "main")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			// Each channel's reply caps are qemu's own (probed), as a
			// direct link would show them; checked against a direct link
			// later, after the proxied session is closed (qemu serves one
			// client at a time).
			got := map[spice.ChannelType]spice.Caps{
				spice.ChannelMain: s.Main.Reply.ChannelCaps, spice.ChannelDisplay: display.Reply.ChannelCaps,
				spice.ChannelInputs: inputs.Reply.ChannelCaps, spice.ChannelCursor: cursor.Reply.ChannelCaps,
			}
			info, err := vm.QuerySpice(ctx)
			require.NoError(t, err, "query-spice")
			assert.GreaterOrEqual(t, len(info.Channels), 4, "qemu's connected channels")
			s.Close()
			d, err := directDialer(vm).Connect(ctx)
			require.NoError(t, err, "direct main")
			defer d.Close()
			want := map[spice.ChannelType]spice.Caps{spice.ChannelMain: d.Main.Reply.ChannelCaps}
			for _, typ := range []spice.ChannelType{spice.ChannelDisplay, spice.ChannelInputs, spice.ChannelCursor} {
				c, err := d.Open(ctx, typ, 0)
				require.NoError(t, err, "direct "+typ.String())
				want[typ] = c.Reply.ChannelCaps
				if typ == spice.ChannelDisplay {
					c.InitDisplay()
				}
			}
			for typ, w := range want {
				if !got[typ].Equal(w) {
					t.Errorf("%s caps through the proxy %v, qemu offers %v", typ, got[typ], w)
				}
			}
		},
	})
}
