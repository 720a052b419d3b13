package scenarios

import (
	"context"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "long-typing",
		Tier:        Core,
		Exercises:   ProxySPICE,
		Description: "a 40-key sentence typed through the proxy arrives whole (qemu's PS/2 queue holds 8 presses)",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "session")
			defer s.Close()
			_, inputs, _ := openAll(ctx, t, s)
			const text = "the quick brown fox jumps over 13 dogs."
			require.NoError(t, inputs.Type(text), "type")
			waitSerial(ctx, t, vm, `READY> the quick brown fox jumps over 13 dogs\.`)
		},
	})
}
