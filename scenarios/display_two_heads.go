package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

func init() {
	Register(Scenario{
		Name:        "display-two-heads",
		Tier:        Channels,
		Exercises:   ProxySPICE | QemuDirect,
		Description: "the guest draws a different picture on each of two heads: display:0 and display:1 through the proxy carry the same pictures as directly",
		Options:     everyChannelLane(),
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			for head := range 2 {
				guestCommand(ctx, t, vm, guestproto.CmdDraw, "head", itoa(head))
			}
			renderBarrier(ctx, t, vm, 2)
			digests := map[string][2]string{}
			connectBoth(ctx, t, env, vm, func(path string, s *spice.Session) {
				var got [2]string
				for head := range uint8(2) {
					d, err := s.OpenDisplay(ctx, head)
					require.NoError(t, err, "%s: display:%d", path, head)
					digest, draws, err := screenDigest(ctx, d)
					require.NoError(t, err, "%s: display:%d's picture", path, head)
					if draws == 0 {
						t.Fatalf("%s: display:%d linked without a picture (no draw before its MARK)", path, head)
					}
					if sc := d.Surface(); sc == nil || sc.Width == 0 {
						t.Fatalf("%s: display:%d has no surface", path, head)
					}
					got[head] = digest
				}
				digests[path] = got
			})
			p, d := digests["proxy"], digests["direct"]
			if d[0] == d[1] {
				t.Fatalf("qemu sends the same picture on both heads directly (%s): the guest's draw did not reach head 1", d[0])
			}
			for head := range 2 {
				if p[head] != d[head] {
					t.Errorf("display:%d through the proxy carries another picture than directly (sha256 %s, direct %s)", head, p[head], d[head])
				}
			}
		},
	})
}
