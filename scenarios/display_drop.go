package scenarios

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
)

func init() {
	Register(Scenario{
		Name:        "display-drop-before-init",
		Tier:        Hardening,
		Exercises:   ProxySPICE,
		Requires:    []harness.Capability{harness.CapTerminatesSPICE},
		Description: "a client dropping its display channel right after link leaves qemu alive and usable",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			for round := range 3 {
				s, f, err := env.Connect(ctx, harness.Proxy, vm)
				require.NoError(t, err, "session")
				sub := vm.Subscribe()
				// Link display through the proxy on a raw socket and drop
				// it at once, before any DISPLAY_INIT: what a crashing
				// client does. spice-server 0.15 segfaults if the proxy
				// passes that close on as is.
				raw, err := dialLink(ctx, f)
				require.NoError(t, err, "dial the proxy")
				_, err = spice.Link(raw, &spice.LinkMess{ConnectionID: s.ID, ChannelType: spice.ChannelDisplay,
					CommonCaps: spice.DefaultCommonCaps, ChannelCaps: spice.ClientChannelCaps(spice.ChannelDisplay)},
					f.Password, spice.LinkOptions{Deadline: time.Now().Add(10 * time.Second)})
				require.NoError(t, err, "display link")
				raw.Close()
				// Positive events first: qemu linked the proxy's display
				// channel, then saw it close.
				port, err := upstreamDisplayClosed(ctx, sub)
				sub.Close()
				require.NoError(t, err, "round %d: the proxy's display channel to qemu", round+1)
				t.Logf("round %d: qemu saw the proxy's display channel (client port %s) link and close", round+1, port)
				survives(ctx, t, vm, 1500*time.Millisecond)
				s.Close()
			}
			// And a new session still gets pictures.
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "new session")
			defer s.Close()
			openAll(ctx, t, s)
		},
	})
}

// upstreamDisplayClosed waits for qemu to report a display channel linked
// (SPICE_INITIALIZED, channel-type 2) and then that connection's
// SPICE_DISCONNECTED; it returns the connection's client port.
func upstreamDisplayClosed(ctx context.Context, sub *qemu.Subscription) (string, error) {
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	port := ""
	for {
		ev, err := sub.Next(wctx, qemu.EventSPICEInitialized, qemu.EventSPICEDisconnected)
		if err != nil {
			var exit *qemu.ExitError
			switch {
			case errors.As(err, &exit):
				return port, fmt.Errorf("qemu crashed after the client dropped its display channel before DISPLAY_INIT (the proxy passed the close on): %w", err)
			case port == "":
				return "", fmt.Errorf("qemu never linked a display channel: %w", err)
			}
			return port, fmt.Errorf("the proxy kept qemu's display channel (client port %s) open after its client left: %w", port, err)
		}
		client, _ := ev.Data["client"].(map[string]any)
		p := fmt.Sprint(client["port"])
		switch {
		case ev.Name == qemu.EventSPICEInitialized && fmt.Sprint(client["channel-type"]) == "2" && port == "":
			port = p
		case ev.Name == qemu.EventSPICEDisconnected && port != "" && p == port:
			return port, nil
		}
	}
}
