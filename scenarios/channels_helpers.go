package scenarios

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// The channels tier's lanes boot the Linux test guest (its agent reports
// what reached the guest on the serial console) with every SPICE channel
// qemu offers (harness.AllChannels: the agent, an echo port, WebDAV,
// usbredir, smartcard, audio, two heads, streaming-video=all, a tablet),
// unless a scenario needs fewer (mouse-absolute: one head, no agent).
func everyChannelLane(extra ...harness.Option) []harness.Option {
	return append([]harness.Option{harness.LinuxGuest(), harness.AllChannels()}, extra...)
}

// guestOf is vm's Linux guest agent; it fails t when the lane has none.
func guestOf(t harness.T, vm *harness.VM) *qemu.Guest {
	t.Helper()
	if vm.Guest == nil {
		t.Fatalf("%s has no Linux guest agent: the scenario needs harness.LinuxGuest() (build the guest with make guest)", vm)
	}
	return vm.Guest
}

// guestCommand runs a guest agent command and fails t unless it is acked
// ok.
func guestCommand(ctx context.Context, t harness.T, vm *harness.VM, name string, kv ...string) guestproto.Event {
	t.Helper()
	ack, err := guestOf(t, vm).Command(ctx, name, kv...)
	require.NoError(t, err, "guest command %s %v", name, kv)
	return ack
}

// withValues matches a guest event whose keys have the values kv (key,
// value, …).
func withValues(kv ...string) func(guestproto.Event) bool {
	return func(e guestproto.Event) bool {
		for i := 0; i+1 < len(kv); i += 2 {
			if e.Value(kv[i]) != kv[i+1] {
				return false
			}
		}
		return true
	}
}

// guestWant waits (bounded by within) for the first event of typ since
// boot whose keys have the values kv (key, value, …) and fails t with
// what the guest did report of that type otherwise.
func guestWant(ctx context.Context, t harness.T, vm *harness.VM, within time.Duration, what, typ string, kv ...string) guestproto.Event {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	ev, err := vm.GuestEvent(wctx, typ, withValues(kv...))
	if err != nil {
		seen := ""
		if evs, eerr := guestOf(t, vm).Events(); eerr == nil {
			for _, e := range evs {
				if e.Type == typ {
					seen += "\n  " + e.String()
				}
			}
		}
		t.Fatalf("%s: the guest reported no %s event with %v within %v: %v; its %s events:%s", what, typ, kv, within, err, typ, seen)
	}
	return ev
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func itoa(n int) string { return strconv.Itoa(n) }

// lastGuestEvent is the time of the guest's latest event, so a wait can
// ask for what comes after it.
func lastGuestEvent(t harness.T, vm *harness.VM) time.Duration {
	t.Helper()
	evs, err := guestOf(t, vm).Events()
	require.NoError(t, err, "guest events")
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].T
}

// connectBoth runs check on a session through the proxy, closes it, then
// on one straight to qemu (the reference): spice-server serves one client
// at a time, so the two run one after the other on the same guest.
func connectBoth(ctx context.Context, t harness.T, env *harness.Env, vm *harness.VM, check func(path string, s *spice.Session)) {
	t.Helper()
	for _, path := range []string{"proxy", "direct"} {
		var s *spice.Session
		var err error
		if path == "proxy" {
			s, _, err = env.Connect(ctx, harness.Proxy, vm)
		} else {
			s, err = directDialer(vm).Connect(ctx)
		}
		require.NoError(t, err, "%s: main channel", path)
		check(path, s)
		s.Close()
		// The next session waits until qemu dropped this one's main
		// channel (or it would kick channels of this one still closing).
		waitNoSession(ctx, t, vm, s.ID)
	}
}

// waitNoSession waits until qemu reports no channel of connection id.
func waitNoSession(ctx context.Context, t harness.T, vm *harness.VM, id uint32) {
	t.Helper()
	n, err := waitSpiceChannelsGone(ctx, vm, 10*time.Second, func(c qemu.SpiceChannel) bool { return uint32(c.ConnectionID) == id })
	if err != nil {
		t.Fatalf("qemu still reports %d channel(s) of session %#x 10 s after the client closed it: %v", n, id, err)
	}
}

// Tones. Under TCG the guest's HDA DMA underruns now and then (a period
// repeated or skipped), so audio checks measure a tone rather than
// compare PCM: a 1 kHz sine at half scale must arrive as 1000 ± 50 Hz,
// at least 90 % of its length, and within 3 dB of -6 dBFS.
const (
	toneHz        = 1000
	toneTolHz     = 50
	toneLevelDBFS = -9.0 // RMS of a half-scale sine: -6 dBFS peak, -9 dBFS RMS
	toneTolDB     = 3.0
)

// toneOf measures the left channel of stereo S16 48 kHz PCM after its
// leading and before its trailing silence: frequency by zero crossings,
// RMS level in dBFS, and the frames of signal.
func toneOf(pcm []byte) (freq, dbfs float64, frames int) {
	n := len(pcm) / 4
	left := make([]float64, n)
	for i := range n {
		left[i] = float64(int16(uint16(pcm[4*i]) | uint16(pcm[4*i+1])<<8))
	}
	lead, end := 0, n
	for lead < n && math.Abs(left[lead]) < 328 {
		lead++
	}
	for end > lead && math.Abs(left[end-1]) < 328 {
		end--
	}
	sig := left[lead:end]
	if len(sig) < 2 {
		return 0, math.Inf(-1), len(sig)
	}
	crossings := 0
	sum := 0.0
	for i, v := range sig {
		sum += v * v
		if i > 0 && (sig[i-1] < 0) != (v < 0) {
			crossings++
		}
	}
	rms := math.Sqrt(sum / float64(len(sig)))
	return float64(crossings) / 2 / (float64(len(sig)) / 48000), 20 * math.Log10(rms/32768), len(sig)
}

// toneFrames is frames of a stereo S16 sine at freq Hz (48 kHz) at half
// scale, from frame from on.
func toneFrames(freq float64, from, frames int) []byte {
	b := make([]byte, 4*frames)
	for i := range frames {
		v := uint16(int16(math.Round(16384 * math.Sin(2*math.Pi*freq*float64(from+i)/48000))))
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(v), byte(v>>8), byte(v), byte(v>>8)
	}
	return b
}

// toneErr says what is wrong with a measured tone ("" when it is within
// the tolerance).
func toneErr(freq, dbfs float64) string {
	switch {
	case math.Abs(freq-toneHz) > toneTolHz:
		return fmt.Sprintf("%.1f Hz, want %d ± %d Hz", freq, toneHz, toneTolHz)
	case math.Abs(dbfs-toneLevelDBFS) > toneTolDB:
		return fmt.Sprintf("%.1f dBFS, want %.0f ± %.0f dB", dbfs, toneLevelDBFS, toneTolDB)
	}
	return ""
}

// screenDigest reads what spice-server sends a display channel when it
// links, up to the MARK that ends it (SURFACE_CREATE, the surface's
// current picture as one lossless image, MONITORS_CONFIG): the sha256 of
// those messages, each image descriptor's id zeroed (a counter of the
// server's, not a pixel), and the number of draws. spice-server encodes
// that picture without a per-client dictionary (LZ or QUIC, never GLZ:
// no drawable), so the same pixels give the same bytes on every link:
// equal digests through the proxy and directly mean the client gets the
// same picture both ways. Messages after the MARK are not read here.
func screenDigest(ctx context.Context, d *spice.Display) (digest string, draws int, err error) {
	h := sha256.New()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		m, err := d.Recv(wctx)
		if err != nil {
			return "", draws, fmt.Errorf("display:%d: waiting for the MARK after the screen: %w", d.ID.ID, err)
		}
		switch {
		case m.Type == spice.MsgDisplayMark:
			return hex.EncodeToString(h.Sum(nil)), draws, nil
		case m.Type == spice.MsgDisplayDrawCopy:
			draws++
			body := append([]byte(nil), m.Body...)
			zeroImageID(body)
			fmt.Fprintf(h, "%d:%d:", m.Type, len(body))
			h.Write(body)
		case m.Type == spice.MsgDisplaySurfaceCreate || m.Type == spice.MsgDisplayMonitorsConfig || spice.IsDraw(m.Type):
			if spice.IsDraw(m.Type) {
				draws++
			}
			fmt.Fprintf(h, "%d:%d:", m.Type, len(m.Body))
			h.Write(m.Body)
		}
	}
}

// zeroImageID zeroes the image descriptor's id in a DRAW_COPY body:
// surface id (4), box (16), clip (type byte, then for RECTS a count and
// the rects), then SpiceCopy's src_bitmap, the offset of the descriptor
// (u64 id first).
func zeroImageID(b []byte) {
	off := 20
	if len(b) <= off {
		return
	}
	if b[off] == spice.ClipRects {
		if len(b) < off+5 {
			return
		}
		off += 4 + 16*int(binary.LittleEndian.Uint32(b[off+1:]))
	}
	off++
	if len(b) < off+4 {
		return
	}
	if img := int(binary.LittleEndian.Uint32(b[off:])); img > 0 && img+8 <= len(b) {
		clear(b[img : img+8])
	}
}

// renderBarrier waits until qemu has rendered what the guest drew on
// each of heads' qxl devices: a QMP screendump makes the device flush the
// drawing commands the guest queued (qemu waits for that before it
// writes the file). A guest's draw ack means the commands are queued,
// not that spice-server has them, so a session that links right after
// the ack can get the picture from before the draw. The dump goes to the
// VM's state dir, so only a local qemu child gets the barrier; for
// others it is skipped (and said).
func renderBarrier(ctx context.Context, t harness.T, vm *harness.VM, heads int) {
	t.Helper()
	p, ok := vm.VM.(*qemu.Process)
	if !ok {
		t.Logf("no render barrier for %s (not a local qemu child): the pictures are compared as the guest's ack left them", vm)
		return
	}
	for head := range heads {
		args := map[string]any{"filename": filepath.Join(p.StateDir(), fmt.Sprintf("barrier-head%d.ppm", head))}
		if head > 0 {
			args["device"] = "video" + strconv.Itoa(head)
		}
		cmd, err := json.Marshal(map[string]any{"execute": "screendump", "arguments": args})
		require.NoError(t, err)
		_, err = vm.Run(ctx, json.RawMessage(cmd))
		require.NoError(t, err, "render barrier: screendump of head %d", head)
	}
}
