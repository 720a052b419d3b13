package scenarios_test

import (
	"context"
	"fmt"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/scenarios"
)

// A regression case is one small file: its init registers it, and
// `go test ./scenarios` and `harness run` both run it.
func ExampleRegister() {
	scenarios.Register(scenarios.Scenario{
		Name:        "example-keys",
		Tier:        scenarios.Core,
		Exercises:   scenarios.ProxySPICE,
		Description: "keys typed through the proxy reach the guest",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			s, _, err := env.Connect(ctx, harness.Proxy, env.VM(0))
			require.NoError(t, err, "session through the proxy")
			defer s.Close()
			_, inputs, _, err := harness.OpenAll(ctx, s)
			require.NoError(t, err, "display, inputs, cursor")
			require.NoError(t, inputs.Type("hi"), "type")
		},
	})
}

func ExampleLookup() {
	s, _ := scenarios.Lookup("terminate")
	fmt.Println(s.Tier, harness.CapList(s.Requires))
	// Output: hardening terminate
}
