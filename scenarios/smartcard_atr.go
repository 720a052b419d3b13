package scenarios

import (
	"context"
	"os"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/tail"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// softCardATR is the ATR of the software smartcard spice-gtk makes from
// certificates (libcacard's CAC emulation, Debian 12's libcacard 2.8):
// TS 3B, T0 7A (TD1 absent, 10 historical bytes), TA1 18, TB1 00, then
// 00 and the historical bytes "sfte cd144", copied from a real CAC card
// so that guest middleware accepts it.
const softCardATR = "3b7a18000073667465206364313434"

func init() {
	Register(Scenario{
		Name:      "smartcard-atr",
		Tier:      Channels,
		Exercises: ProxySPICE,
		Description: "remote-viewer's software smartcard (--spice-smartcard from an NSS db of three certificates) " +
			"reaches the guest's CCID reader through the proxy: the guest reads the card's ATR",
		Options:  []harness.Option{harness.LinuxGuest(), harness.Channels(qemu.SmartcardChannel())},
		Requires: []harness.Capability{harness.CapSPICEClients},
		Needs:    []string{needRemoteViewer, needXvfb, needXdotool, needCertutil},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			dir, err := os.MkdirTemp(env.Dir, "card-")
			require.NoError(t, err)
			db, err := makeCardDB(ctx, dir)
			require.NoError(t, err, "make the NSS database (certutil)")
			start := time.Now()
			rv, err := env.RemoteViewer(ctx, harness.Proxy, vm, harness.SoftSmartcard(db, softCardCerts...))
			require.NoError(t, err, "start remote-viewer --spice-smartcard")
			defer rv.Close()
			wctx, cancel := context.WithTimeout(ctx, realClientWait)
			defer cancel()
			require.NoError(t, rv.WaitOpened(wctx), "remote-viewer opening the proxy .vv")

			// The card is inserted when the smartcard channel opens: the
			// client sends its reader and the card's ATR (VSC_ReaderAdd,
			// VSC_ATR) over the channel, qemu's CCID reader signals the
			// slot change and the agent powers the card on
			// (PC_to_RDR_IccPowerOn: the reply carries the ATR).
			sctx, done := untilClosed(ctx, vm, spice.ChannelSmartcard)
			defer done()
			ins := guestEvent(sctx, t, vm, "no card reached the guest's CCID reader", rv.Log, guestproto.TypeSmartcard)
			t.Logf("card in the guest's reader %v after remote-viewer started: %s", time.Since(start).Round(time.Millisecond), ins)
			if got := ins.Value("atr"); got != softCardATR {
				t.Errorf("the guest's reader reports ATR %q (err %q), want the software card's %s", got, ins.Value("err"), softCardATR)
			}
			// Powered on again on demand, the card is still in the reader
			// (the client has not removed it); the agent reports the ATR
			// before it acks.
			cctx, cancel2 := context.WithTimeout(ctx, realClientWait)
			defer cancel2()
			ack, err := vm.Guest.Command(cctx, guestproto.CmdSmartcard)
			if err != nil {
				t.Fatalf("powering the card on again (guest smartcard command): %v\n%s", err, tail.Lines(rv.Log(), 15))
			}
			again, err := vm.GuestEvent(cctx, guestproto.TypeSmartcard, func(e guestproto.Event) bool { return e.T > ins.T && e.T <= ack.T })
			require.NoError(t, err, "the smartcard command's ATR event")
			if got := again.Value("atr"); got != softCardATR {
				t.Errorf("powered on again, the card answers ATR %q (err %q), want %s", got, again.Value("err"), softCardATR)
			}
		},
	})
}
