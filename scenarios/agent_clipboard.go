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

// clipboardSizes: one byte, one agent chunk's worth past a main-channel
// message (64 KiB: 32 AGENT_DATA pieces of 2 KiB), and 1 MiB (512
// pieces, past any 64 KiB message cap a relay might have).
var clipboardSizes = []int{1, 64 << 10, 1 << 20}

func init() {
	Register(Scenario{
		Name:        "agent-clipboard",
		Tier:        Channels,
		Exercises:   ProxySPICE,
		Description: "the agent's clipboard through the proxy both ways in 1 B, 64 KiB and 1 MiB: the guest reports each length and sha256, the client gets the guest's bytes",
		Options:     everyChannelLane(),
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "main through the proxy")
			defer s.Close()
			ag, err := s.Agent(ctx)
			require.NoError(t, err, "the guest's agent through the proxy (AGENT_CONNECTED on main)")
			for i, n := range clipboardSizes {
				// Client → guest: a grab, the guest's request, the data
				// in AGENT_DATA pieces; the guest reports what it got.
				data := guestproto.PatternBytes(uint64(100+i), n)
				require.NoError(t, ag.SetClipboard(ctx, data), "client clipboard of %d bytes", n)
				guestWant(ctx, t, vm, 15*time.Second, "client → guest clipboard", vdagent.TypeClipboard,
					"dir", "from-client", "len", itoa(n), "sha256", sha256Hex(data))

				// Guest → client: the guest's agent grabs (clipboard-set),
				// the client requests and reassembles.
				seed := 200 + i
				guestCommand(ctx, t, vm, guestproto.CmdClipboardSet, "len", itoa(n), "seed", itoa(seed))
				want := guestproto.PatternBytes(uint64(seed), n)
				gctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				got, err := ag.GuestClipboard(gctx)
				cancel()
				require.NoError(t, err, "guest clipboard of %d bytes", n)
				if !bytes.Equal(got.Data, want) {
					t.Fatalf("guest → client clipboard of %d bytes arrived as %d bytes (sha256 %s, want %s)", n, len(got.Data), sha256Hex(got.Data), sha256Hex(want))
				}
			}
		},
	})
}
