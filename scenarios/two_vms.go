package scenarios

import (
	"context"
	"strings"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "two-vms-isolated",
		Description: "a token for one VM reaches that VM only; its session id opens nothing on the other",
		Options:     []harness.Option{harness.VMs(2)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			a, b := env.VM(0), env.VM(1)
			sa, fa, err := env.Connect(ctx, harness.Proxy, a)
			check(t, err, "session on vm 1")
			defer sa.Close()
			_, in, _ := openAll(ctx, t, sa)
			check(t, in.Type("only-a"), "type")
			waitSerial(ctx, t, a, `only-a`)
			if strings.Contains(b.SerialTail(5), "only-a") {
				t.Errorf("keys for vm 1 reached vm 2")
			}
			infoB, err := b.QuerySpice(ctx)
			check(t, err, "query-spice vm 2")
			if len(infoB.Channels) != 0 {
				t.Errorf("vm 2 has %d SPICE channels though only vm 1 was opened", len(infoB.Channels))
			}
			// vm 2's token cannot join vm 1's session.
			fb, err := env.FetchVV(ctx, harness.Proxy, b)
			check(t, err, "fetch vm 2 .vv")
			_, err = harness.Dialer(fb.File).DialChannel(ctx, sa.ID, spice.ChannelDisplay, 0)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrBadConnectionID)
			_ = fa
		},
	})
}
