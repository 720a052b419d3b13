package scenarios

import (
	"bytes"
	"context"
	"strconv"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/guestagent/vdagent"
	"github.com/spiceharness/spiceharness/internal/tail"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

func init() {
	Register(Scenario{
		Name:      "agent-clipboard-x11",
		Tier:      Channels,
		Exercises: ProxySPICE,
		Description: "remote-viewer through the proxy follows its X clipboard: text an X client (xclip) copies reaches " +
			"the guest's agent byte-exact, and text the guest copies is pasted back from the client's X display",
		Options:  []harness.Option{harness.LinuxGuest(), harness.Channels(qemu.AgentChannel())},
		Requires: []harness.Capability{harness.CapSPICEClients},
		Needs:    []string{needRemoteViewer, needXvfb, needXdotool, needXclip},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			start := time.Now()
			rv, err := env.RemoteViewer(ctx, harness.Proxy, vm)
			require.NoError(t, err, "start remote-viewer")
			defer rv.Close()
			wctx, cancel := context.WithTimeout(ctx, realClientWait)
			defer cancel()
			require.NoError(t, rv.WaitOpened(wctx), "remote-viewer opening the proxy .vv")
			// spice-gtk announces a clipboard grab only to an agent it
			// has exchanged caps with: wait for the guest to see them.
			guestEvent(ctx, t, vm, "remote-viewer's agent caps never reached the guest's agent", rv.Log, vdagent.TypeAgent, "event", "client")

			// Client → guest: 200 000 bytes, about a hundred agent chunks
			// (VD_AGENT_MAX_DATA_SIZE is 2048) on the main channel.
			up := clipboardText(61, 200_000)
			owner, err := rv.X.SetClipboard(wctx, up)
			require.NoError(t, err, "xclip owning the client's clipboard")
			defer owner.Close()
			ev := guestEvent(ctx, t, vm, "the client's clipboard never reached the guest", rv.Log,
				vdagent.TypeClipboard, "dir", "from-client", "len", strconv.Itoa(len(up)))
			if ev.Value("sha256") != sum256(up) {
				t.Errorf("the guest received %s bytes with sha256 %s; the client's clipboard has sha256 %s", ev.Value("len"), ev.Value("sha256"), sum256(up))
			}
			t.Logf("client → guest: %d bytes %v after remote-viewer started", len(up), time.Since(start).Round(time.Millisecond))

			// Guest → client: the guest's agent grabs the clipboard and
			// spice-gtk takes the X selection; a paste asks the guest for
			// the data.
			down := clipboardText(62, 100_000)
			if _, err := vm.Guest.Command(wctx, guestproto.CmdClipboardSet, "text", string(down)); err != nil {
				t.Fatalf("guest clipboard-set: %v", err)
			}
			// Nothing tells an X client when another one takes the
			// selection (XFixes could, but xclip only reads it once), so
			// the paste is tried again every 100 ms until it has the
			// guest's bytes or the bound ends.
			var got []byte
			for {
				got, err = rv.X.Clipboard(wctx)
				if err == nil && bytes.Equal(got, down) {
					break
				}
				select {
				case <-wctx.Done():
					t.Fatalf("the guest's clipboard never reached the client's X display: last paste %d bytes (sha256 %s, want %d bytes, %s), %v\n%s",
						len(got), sum256(got), len(down), sum256(down), err, tail.Lines(rv.Log(), 15))
				case <-time.After(100 * time.Millisecond):
				}
			}
			t.Logf("guest → client: %d bytes pasted %v after remote-viewer started", len(down), time.Since(start).Round(time.Millisecond))
		},
	})
}
