package scenarios

import (
	"context"

	"github.com/spiceharness/spiceharness/harness"
)

func init() {
	Register(Scenario{
		Name:        "direct-multi-channel",
		Description: "the Go client alone links main, display (first draw), inputs and cursor to qemu; its keys reach the guest",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Direct, vm)
			check(t, err, "main")
			defer s.Close()
			_, inputs, _ := openAll(ctx, t, s)
			check(t, inputs.Type("direct"), "type")
			waitSerial(ctx, t, vm, `READY> direct`)
		},
	})
}
