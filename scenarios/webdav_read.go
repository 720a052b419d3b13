package scenarios

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/guestagent/webdav"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

func init() {
	Register(Scenario{
		Name:      "webdav-read",
		Tier:      Channels,
		Exercises: ProxySPICE,
		Description: "spice-gtk's spicy shares a folder (--spice-shared-dir) through the proxy; the guest reads a file " +
			"over the WebDAV port (org.spice-space.webdav.0) and its sha256 is the file's",
		Options:  []harness.Option{harness.LinuxGuest(), harness.Channels(qemu.WebDAVChannel())},
		Requires: []harness.Capability{harness.CapSPICEClients},
		// spicy, not remote-viewer: remote-viewer 11 opens the WebDAV
		// channel only after a user ticks Preferences → "Share folder"
		// (harness.ShareDir says more).
		Needs: []string{needSpicy, needXvfb},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			dir, err := os.MkdirTemp(env.Dir, "shared-")
			require.NoError(t, err)
			// 300 KiB: spice-gtk muxes WebDAV replies in messages of up
			// to 64 KiB of data plus its 10-byte client header, so the
			// read crosses several full-size spicevmc messages.
			data := guestproto.PatternBytes(52, 300<<10)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "shared.bin"), data, 0o600))
			start := time.Now()
			sp, err := env.Spicy(ctx, harness.Proxy, vm, harness.ShareDir(dir))
			require.NoError(t, err, "start spicy --spice-shared-dir")
			defer sp.Close()
			// The guest's WebDAV client waits for the port to open (the
			// client connecting its WebDAV channel), then sends GET.
			cctx, cancel := context.WithTimeoutCause(ctx, realClientWait, errors.New("no answer"))
			defer cancel()
			wctx, done := untilClosed(cctx, vm, spice.ChannelWebdav)
			ack, err := vm.Guest.Command(wctx, guestproto.CmdWebDAVRead, "path", "/shared.bin")
			done()
			if err != nil {
				t.Fatalf("the guest's WebDAV read of /shared.bin through the proxy: %v (%v)\n%s", err, context.Cause(wctx), sp.Tail(15))
			}
			t.Logf("read %s bytes over WebDAV %v after spicy started", ack.Value("len"), time.Since(start).Round(time.Millisecond))
			if ack.Value("len") != strconv.Itoa(len(data)) || ack.Value("sha256") != sum256(data) {
				t.Errorf("the guest read %s bytes with sha256 %s over WebDAV; the shared file has %d bytes, sha256 %s",
					ack.Value("len"), ack.Value("sha256"), len(data), sum256(data))
			}
			guestEvent(ctx, t, vm, "the guest's WebDAV service reported no GET of /shared.bin", sp.Log,
				webdav.TypeWebDAV, "method", "GET", "path", "/shared.bin", "status", "200")
		},
	})
}
