package scenarios

import (
	"bytes"
	"context"
	"slices"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

func init() {
	Register(Scenario{
		Name:        "channel-matrix",
		Tier:        Channels,
		Exercises:   ProxySPICE | QemuDirect,
		Description: "every channel qemu lists (two heads, audio, smartcard, usbredir, port, webdav) links through the proxy and qemu reports each connected; the list equals the direct one",
		Options:     everyChannelLane(),
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			lists := map[string][]spice.ChannelID{}
			connectBoth(ctx, t, env, vm, func(path string, s *spice.Session) {
				list, err := s.ChannelsList(ctx)
				require.NoError(t, err, "%s: CHANNELS_LIST", path)
				lists[path] = list
				if path == "direct" {
					return // the reference: its list is all it is here for
				}
				// Every type a client may open, as remote-viewer would with
				// every feature on: a proxy's allowlist or firewall that
				// leaves one out shows here, not in the field.
				var opened []spice.ChannelID
				var echo *spice.Port
				for _, id := range list {
					switch {
					case id.Type == spice.ChannelDisplay:
						_, err = s.OpenDisplay(ctx, id.ID)
					case id.Type == spice.ChannelPort && echo == nil:
						echo, err = s.OpenPort(ctx, qemu.EchoPortName)
					default:
						_, err = s.Open(ctx, id.Type, id.ID)
					}
					if err != nil {
						t.Errorf("%s: link %s through the proxy: %v", path, id, err)
						continue
					}
					opened = append(opened, id)
				}
				// qemu's own view: each linked channel is a connected
				// channel of this session (query-spice), not only a link
				// reply the proxy may have answered itself.
				missing := waitConnected(ctx, vm, s.ID, append([]spice.ChannelID{{Type: spice.ChannelMain}}, opened...))
				if len(missing) > 0 {
					t.Errorf("%s: qemu reports no connected channel for %v of session %#x", path, missing, s.ID)
				}
				// A spicevmc channel carries bytes both ways: 256 KiB
				// through the guest's echo port (DATA messages of up to
				// 64 KiB each way), the guest reporting what it read.
				if echo == nil {
					t.Fatalf("%s: no port channel named %s to echo on", path, qemu.EchoPortName)
				}
				require.NoError(t, echo.WaitOpened(ctx), "%s: the guest opening its echo port", path)
				data := guestproto.PatternBytes(400, 256<<10)
				_, err = echo.Write(data)
				require.NoError(t, err, "%s: port DATA to the guest", path)
				guestWant(ctx, t, vm, 10*time.Second, path+": client → guest port bytes", guestproto.TypePortRx,
					"total", itoa(len(data)), "total_sha256", sha256Hex(data))
				ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
				got, err := echo.ReadFull(ectx, len(data))
				cancel()
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%s: the guest's echo came back as %d of %d bytes (sha256 %s): %v", path, len(got), len(data), sha256Hex(got), err)
				}
			})
			want := []spice.ChannelType{spice.ChannelDisplay, spice.ChannelInputs, spice.ChannelCursor, spice.ChannelPlayback,
				spice.ChannelRecord, spice.ChannelSmartcard, spice.ChannelUsbredir, spice.ChannelPort, spice.ChannelWebdav}
			for _, typ := range want {
				if !slices.ContainsFunc(lists["direct"], func(c spice.ChannelID) bool { return c.Type == typ }) {
					t.Errorf("qemu lists no %s channel directly (%v): the lane's qemu lacks a device", typ, lists["direct"])
				}
			}
			if d := cmp.Diff(lists["direct"], lists["proxy"]); d != "" {
				t.Errorf("CHANNELS_LIST through the proxy differs from qemu's (-direct +proxy):\n%s", d)
			}
			t.Logf("%d channels listed: %v", len(lists["direct"]), lists["direct"])
		},
	})
}

// waitConnected waits (up to 10 s) until qemu's query-spice lists every
// channel of want under connection id, and returns those it never did.
func waitConnected(ctx context.Context, vm *harness.VM, id uint32, want []spice.ChannelID) []spice.ChannelID {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		var missing []spice.ChannelID
		info, err := vm.QuerySpice(wctx)
		if err == nil {
			for _, w := range want {
				if !slices.ContainsFunc(info.Channels, func(c qemu.SpiceChannel) bool {
					return uint32(c.ConnectionID) == id && spice.ChannelType(c.ChannelType) == w.Type && uint8(c.ChannelID) == w.ID
				}) {
					missing = append(missing, w)
				}
			}
			if len(missing) == 0 {
				return nil
			}
		}
		select {
		case <-wctx.Done():
			if err != nil {
				return append(missing, spice.ChannelID{}) // query-spice itself failed
			}
			return missing
		case <-time.After(50 * time.Millisecond): // polling QMP: no event per channel type
		}
	}
}
