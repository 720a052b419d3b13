package scenarios

import (
	"context"
	"strconv"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

func init() {
	Register(Scenario{
		Name:        "audio-record",
		Tier:        Channels,
		Exercises:   ProxySPICE | QemuDirect,
		Description: "a 1 kHz tone the client sends on the record channel through the proxy, as directly, is what the guest captures: 1000 ± 50 Hz, -9 ± 3 dBFS RMS",
		Options:     everyChannelLane(),
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			connectBoth(ctx, t, env, vm, func(path string, s *spice.Session) {
				rec, err := s.OpenRecord(ctx, false)
				require.NoError(t, err, "%s: record channel", path)
				since := lastGuestEvent(t, vm)
				guestCommand(ctx, t, vm, guestproto.CmdCaptureStart)
				rs, err := rec.WaitStart(ctx)
				require.NoError(t, err, "%s: RECORD_START once the guest records", path)
				if rs.Channels != 2 || rs.Format != spice.AudioFormatS16 || rs.Frequency != 48000 {
					t.Fatalf("%s: RECORD_START %+v, want 2 channels of S16 at 48 kHz", path, rs)
				}
				require.NoError(t, rec.SendMode(0, spice.AudioModeRaw), "%s: record MODE", path)
				require.NoError(t, rec.SendStartMark(0), "%s: START_MARK", path)
				// Paced as a microphone is: one second of samples at the
				// rate the guest records them, by the clock and 60 ms ahead
				// (qemu's record buffer holds a few periods and drops what
				// comes faster; what comes late it fills with silence, which
				// would lower the tone the guest measures: a ticker that
				// falls behind on a loaded machine did, 834 Hz).
				start := time.Now()
				for n := 0; n < 48000; {
					due := min(48000, int(time.Since(start).Seconds()*48000)+48*60)
					for ; n+480 <= due; n += 480 {
						if err := rec.SendPCM(0, toneFrames(toneHz, n, 480), 0); err != nil {
							t.Fatalf("%s: record DATA: %v", path, err)
						}
					}
					time.Sleep(5 * time.Millisecond) // pacing a live source, not waiting for an event
				}
				guestCommand(ctx, t, vm, guestproto.CmdCaptureStop)
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				ev, err := vm.GuestEvent(wctx, guestproto.TypeAudio, func(e guestproto.Event) bool { return e.T > since })
				cancel()
				require.NoError(t, err, "%s: the guest's capture report", path)
				freq, _ := strconv.ParseFloat(ev.Value("freq_hz"), 64)
				dbfs, _ := strconv.ParseFloat(ev.Value("rms_dbfs"), 64)
				t.Logf("%s: the guest captured %s frames at %.1f Hz, %.1f dBFS", path, ev.Value("frames"), freq, dbfs)
				if why := toneErr(freq, dbfs); why != "" {
					t.Errorf("%s: the guest recorded %s", path, why)
				}
			})
		},
	})
}
