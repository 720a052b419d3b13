package scenarios

import (
	"bytes"
	"context"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/guestagent/vdagent"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

func init() {
	Register(Scenario{
		Name:        "agent-file-transfer",
		Tier:        Channels,
		Exercises:   ProxySPICE,
		Description: "an 8 MiB file through the proxy to the guest's agent (START, DATA, STATUS): the guest reports success, its length and sha256",
		Options:     everyChannelLane(),
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "main through the proxy")
			defer s.Close()
			ag, err := s.Agent(ctx)
			require.NoError(t, err, "the guest's agent through the proxy")
			file := guestproto.PatternBytes(300, 8<<20)
			start := time.Now()
			require.NoError(t, ag.SendFile(ctx, "eight.bin", bytes.NewReader(file), int64(len(file))), "file transfer (the agent's final STATUS)")
			t.Logf("8 MiB through the proxy in %v", time.Since(start).Round(time.Millisecond))
			guestWant(ctx, t, vm, 30*time.Second, "file transfer", vdagent.TypeFile,
				"name", "eight.bin", "status", "success", "len", itoa(len(file)), "sha256", sha256Hex(file))
		},
	})
}
