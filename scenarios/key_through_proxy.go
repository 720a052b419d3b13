package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "key-through-proxy",
		Tier:        Core,
		Exercises:   ProxySPICE,
		Description: "keys sent on the inputs channel through the proxy reach the guest's serial log",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "session")
			defer s.Close()
			_, inputs, _ := openAll(ctx, t, s)
			require.NoError(t, inputs.Type("spice 42"), "type")
			waitSerial(ctx, t, vm, `READY> spice 42`)
		},
	})
}
