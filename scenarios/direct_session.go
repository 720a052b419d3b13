package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "direct-multi-channel",
		Tier:        Core,
		Exercises:   ProxyAPI | QemuDirect,
		Description: "the API's direct .vv: the Go client links main, display (first draw), inputs and cursor to qemu; its keys reach the guest",
		Requires:    []harness.Capability{harness.CapDirectVV},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Direct, vm)
			require.NoError(t, err, "main")
			defer s.Close()
			_, inputs, _ := openAll(ctx, t, s)
			require.NoError(t, inputs.Type("direct"), "type")
			waitSerial(ctx, t, vm, `READY> direct`)
		},
	})
}
