package scenarios

import (
	"context"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:        "direct-handshake",
		Description: "a direct link with the fresh ticket opens a session; qemu reports the client",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Direct, vm)
			check(t, err, "direct link with the .vv's ticket")
			defer s.Close()
			if s.ID == 0 {
				t.Errorf("MAIN_INIT gave session id 0")
			}
			list, err := s.ChannelsList(ctx)
			check(t, err, "CHANNELS_LIST")
			if len(list) == 0 {
				t.Errorf("empty CHANNELS_LIST")
			}
			for _, c := range list {
				if c.Type == spice.ChannelMain {
					t.Errorf("CHANNELS_LIST lists main")
				}
			}
			info, err := vm.QuerySpice(ctx)
			check(t, err, "query-spice")
			if len(info.Channels) == 0 {
				t.Errorf("query-spice lists no connected channel")
			}
		},
	})
}
