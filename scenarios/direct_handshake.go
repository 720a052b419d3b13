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
		Name:        "direct-handshake",
		Tier:        Core,
		Exercises:   ProxyAPI | QemuDirect,
		Description: "the API's direct .vv links straight to qemu with the fresh ticket; qemu reports the client",
		Requires:    []harness.Capability{harness.CapDirectVV},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Direct, vm)
			require.NoError(t, err, "direct link with the .vv's ticket")
			defer s.Close()
			assert.NotZero(t, s.ID, "MAIN_INIT gave session id 0")
			list, err := s.ChannelsList(ctx)
			require.NoError(t, err, "CHANNELS_LIST")
			assert.NotEmpty(t, list, "empty CHANNELS_LIST")
			for _, c := range list {
				assert.NotEqual(t, spice.ChannelMain, c.Type, "CHANNELS_LIST lists main")
			}
			info, err := vm.QuerySpice(ctx)
			require.NoError(t, err, "query-spice")
			assert.NotEmpty(t, info.Channels, "query-spice lists no connected channel")
		},
	})
}
