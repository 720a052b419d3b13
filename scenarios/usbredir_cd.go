package scenarios

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/tail"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

func init() {
	Register(Scenario{
		Name:      "usbredir-cd",
		Tier:      Channels,
		Exercises: ProxySPICE,
		Description: "remote-viewer shares an ISO as a USB CD (--spice-share-cd) through the proxy; " +
			"the guest reads the redirected drive whole and its sha256 is the ISO's",
		Options:  []harness.Option{harness.LinuxGuest(), harness.Channels(qemu.USBRedirChannels(1))},
		Requires: []harness.Capability{harness.CapSPICEClients},
		Needs:    []string{needRemoteViewer, needXvfb, needXdotool, needGenisoimage},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			dir, err := os.MkdirTemp(env.Dir, "cd-")
			require.NoError(t, err)
			// 2 MiB: the guest's reads span many usbredir bulk packets,
			// some larger than 64 KiB (Linux reads ahead 128 KiB).
			iso, image, err := makeISO(ctx, dir, guestproto.PatternBytes(51, 2<<20))
			require.NoError(t, err, "make the ISO (genisoimage)")
			start := time.Now()
			rv, err := env.RemoteViewer(ctx, harness.Proxy, vm, harness.ShareCD(iso))
			require.NoError(t, err, "start remote-viewer --spice-share-cd")
			defer rv.Close()
			wctx, cancel := context.WithTimeout(ctx, realClientWait)
			defer cancel()
			require.NoError(t, rv.WaitOpened(wctx), "remote-viewer opening the proxy .vv")

			// spice-gtk's emulated CD is USB 2b23:cdcd ("Red Hat", "SPICE
			// CD"); the guest's agent reads any USB block device whole
			// once its medium is ready and reports the sha256.
			usb := guestEvent(ctx, t, vm, "the shared CD never reached the guest's USB bus", cdHint(rv.Log),
				guestproto.TypeUSB, "action", "add", "vid", "2b23", "pid", "cdcd")
			// The read ends in a storage event, or the CD leaves the bus
			// first (its usbredir channel closed) or the read fails.
			ev := firstGuestEvent(ctx, t, vm, "the guest never read the redirected CD whole", cdHint(rv.Log), func(e guestproto.Event) bool {
				return (e.Type == guestproto.TypeStorage && e.Value("usb") == "2b23:cdcd") ||
					(e.T > usb.T && e.Type == guestproto.TypeUSB && e.Value("action") == "remove" && e.Value("vid") == "2b23") ||
					(e.T > usb.T && e.Type == guestproto.TypeError && strings.HasPrefix(e.Value("what"), "storage"))
			})
			if ev.Type != guestproto.TypeStorage {
				t.Fatalf("the redirected CD failed in the guest before it was read whole: %s\n%s", ev, tail.Lines(cdHint(rv.Log)(), 15))
			}
			t.Logf("the CD read whole %v after it attached, %v after remote-viewer started: %s",
				ev.T-usb.T, time.Since(start).Round(time.Millisecond), ev)
			if ev.Value("bytes") != strconv.Itoa(len(image)) || ev.Value("sha256") != sum256(image) {
				t.Errorf("the guest read %s bytes with sha256 %s from the redirected CD; the ISO has %d bytes, sha256 %s",
					ev.Value("bytes"), ev.Value("sha256"), len(image), sum256(image))
			}
		},
	})
}

// cdHint appends to remote-viewer's log the likely cause when
// spice-gtk's usbredir channel failed re-linking: a .vv with both ports
// and no secure-channels makes spice-gtk link each channel on the plain
// port first; when that port answers NEED_SECURED, spice-gtk 0.42
// re-links the usbredir channel carrying the CD it redirects on connect
// and fails the assertion below, so the CD never attaches.
func cdHint(log func() string) func() string {
	return func() string {
		l := log()
		if strings.Contains(l, "c->sock == NULL") {
			return l + "\nremote-viewer's usbredir channel failed to re-link (\"channel_connect: assertion 'c->sock == NULL'\"): " +
				"spice-gtk 0.42 loses a CD redirected on connect when its channel follows NEED_SECURED from the .vv's plain port; " +
				"a proxy whose plain port only answers NEED_SECURED should list secure-channels=all in its .vv (or leave port= out)"
		}
		return l
	}
}
