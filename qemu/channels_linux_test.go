package qemu_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/guestagent/vdagent"
	"github.com/spiceharness/spiceharness/internal/guestagent/webdav"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestIntegrationLinuxChannels moves data on every channel the Linux
// guest serves, with the Go client straight to qemu (one boot for all:
// the guest costs seconds under TCG): the echo port's PORT_EVENT OPENED
// when the guest opens it and bytes both ways, the agent's clipboard
// both ways in 1 B, 64 KiB and 1 MiB, an 8 MiB file transfer, monitors
// config, a WebDAV read of a shared folder, display:1 drawing, the
// mouse in server mode (PS/2 motion) and client mode (which qemu offers
// through the agent once one is attached), and a tone played and one
// recorded.
func TestIntegrationLinuxChannels(t *testing.T) {
	needLinuxGuest(t)
	start := time.Now()
	vm := startVM(t, qemu.LinuxGuest(), qemu.AllChannels())
	ctx := ctxT(t, 3*time.Minute)
	ticket, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ep := vm.Endpoint()
	s, err := (&spice.Dialer{Host: ep.HostIP, Port: ep.Port, Password: ticket}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Linked while the guest still boots: its agent opening the port
	// later arrives as PORT_EVENT OPENED.
	echo, err := s.OpenPort(ctx, qemu.EchoPortName)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitFor(ctx, qemu.ForAgentReady()); err != nil {
		t.Fatal(err)
	}
	t.Logf("guest ready %v after qemu started", time.Since(start).Round(time.Millisecond))
	g, err := qemu.DialGuest(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	event := func(typ string, kv ...string) guestproto.Event {
		t.Helper()
		ev, err := g.WaitEvent(ctx, typ, func(e guestproto.Event) bool {
			for i := 0; i+1 < len(kv); i += 2 {
				if e.Value(kv[i]) != kv[i+1] {
					return false
				}
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}

	t.Run("port", func(t *testing.T) {
		if err := echo.WaitOpened(ctx); err != nil {
			t.Fatal(err)
		}
		if echo.Init.Opened {
			t.Log("the guest had the port open before the link: no PORT_EVENT to see")
		} else if ev := echo.Events(); len(ev) == 0 || ev[0] != spice.PortEventOpened {
			t.Errorf("unexpected port events %v, want OPENED first", ev)
		}
		data := guestproto.PatternBytes(1, 256<<10)
		if _, err := echo.Write(data); err != nil {
			t.Fatal(err)
		}
		got, err := echo.ReadFull(ctx, len(data))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("echoed %d of %d bytes: %v", len(got), len(data), err)
		}
		event(guestproto.TypePortRx, "total", strconv.Itoa(len(data)), "total_sha256", hexSum(data))
	})

	t.Run("agent", func(t *testing.T) {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		ag, err := s.Agent(actx)
		if err != nil {
			t.Fatalf("%v (the guest's agent answers on com.redhat.spice.0 once internal/guestagent/init serves it with package vdagent)", err)
		}
		for i, n := range []int{1, 64 << 10, 1 << 20} {
			data := guestproto.PatternBytes(uint64(10+i), n)
			if err := ag.SetClipboard(ctx, data); err != nil {
				t.Fatal(err)
			}
			event(vdagent.TypeClipboard, "dir", "from-client", "len", strconv.Itoa(n), "sha256", hexSum(data))

			seed := strconv.Itoa(20 + i)
			if _, err := g.Command(ctx, guestproto.CmdClipboardSet, "len", strconv.Itoa(n), "seed", seed); err != nil {
				t.Fatal(err)
			}
			got, err := ag.GuestClipboard(ctx)
			want := guestproto.PatternBytes(uint64(20+i), n)
			if err != nil || !bytes.Equal(got.Data, want) {
				t.Fatalf("guest clipboard of %d bytes: got %d (sha256 %s), %v", n, len(got.Data), hexSum(got.Data), err)
			}
		}
		file := guestproto.PatternBytes(30, 8<<20)
		xfer := time.Now()
		if err := ag.SendFile(ctx, "eight.bin", bytes.NewReader(file), int64(len(file))); err != nil {
			t.Fatal(err)
		}
		t.Logf("8 MiB file transfer in %v", time.Since(xfer).Round(time.Millisecond))
		event(vdagent.TypeFile, "name", "eight.bin", "status", "success", "len", strconv.Itoa(len(file)), "sha256", hexSum(file))

		// With a non-qxl first head spice-server passes MONITORS_CONFIG to
		// the agent (only when every display's driver takes client
		// monitor configs does it go to qxl instead).
		rep, err := ag.SetMonitors(ctx, spice.MonitorsConfig{Monitors: []spice.MonConfig{{Width: 1024, Height: 768, Depth: 32}, {Width: 800, Height: 600, Depth: 32}}})
		if err != nil || rep.Error != spice.AgentSuccess {
			t.Fatalf("monitors config reply %+v, %v", rep, err)
		}
		event(vdagent.TypeMonitorsConfig, "head", "1", "heads", "2", "w", "800", "h", "600")
	})

	t.Run("webdav", func(t *testing.T) {
		dir := t.TempDir()
		data := guestproto.PatternBytes(40, 300<<10)
		if err := os.WriteFile(filepath.Join(dir, "shared.bin"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ShareFolder(ctx, spice.WebDAVFolder(dir)); err != nil {
			t.Fatal(err)
		}
		if _, err := g.Command(ctx, guestproto.CmdWebDAVRead, "path", "/shared.bin"); err != nil {
			t.Fatalf("%v (the guest reads WebDAV once internal/guestagent/init serves the port with package webdav)", err)
		}
		event(webdav.TypeWebDAV, "method", "GET", "path", "/shared.bin", "status", "200", "len", strconv.Itoa(len(data)), "sha256", hexSum(data))
	})

	t.Run("display1", func(t *testing.T) {
		d1, err := s.OpenDisplay(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Command(ctx, guestproto.CmdDraw, "head", "1"); err != nil {
			t.Fatal(err)
		}
		if _, draw, err := d1.WaitFirstDraw(ctx); err != nil {
			t.Fatalf("display:1 after the guest drew on head 1: %v", err)
		} else {
			t.Logf("display:1: surface %+v, first draw type %d", d1.Surface(), draw.Type)
		}
	})

	t.Run("mouse", func(t *testing.T) {
		in, err := s.OpenInputs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.RequestMouseMode(ctx, spice.MouseModeServer); err != nil {
			t.Fatal(err)
		}
		since := time.Duration(0)
		if evs, err := g.Events(); err == nil && len(evs) > 0 {
			since = evs[len(evs)-1].T
		}
		for range 4 {
			if err := in.Motion(ctx, 5, 3); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := g.WaitEvent(ctx, guestproto.TypeMouse, func(e guestproto.Event) bool { return e.T > since && e.Value("dx") != "" }); err != nil {
			t.Fatalf("server-mode motion did not reach the guest's PS/2 mouse: %v", err)
		}
		// Two display channels: qemu offers client mode through the agent,
		// not the tablet.
		if sup, _ := s.MouseMode(); sup&spice.MouseModeClient == 0 {
			t.Fatalf("client mouse mode not offered (supported %#x)", sup)
		}
		if err := s.RequestMouseMode(ctx, spice.MouseModeClient); err != nil {
			t.Fatal(err)
		}
		if err := in.Position(ctx, 123, 45, 0); err != nil {
			t.Fatal(err)
		}
		event(vdagent.TypeAgentMouse, "x", "123", "y", "45")
		if err := in.Press(spice.MouseButtonLeft); err != nil {
			t.Fatal(err)
		}
		event(vdagent.TypeAgentMouse, "x", "123", "y", "45", "buttons", "2") // VD_AGENT_LBUTTON_MASK
		if err := in.Release(spice.MouseButtonLeft); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("audio", func(t *testing.T) {
		// Tones, not sample-exact PCM: qemu passes samples through
		// unchanged, but under TCG on a loaded machine the HDA DMA
		// underruns now and then (measured: the first 67 796 bytes of a
		// 96 000-byte pattern exact, then periods shifted).
		pb, err := s.OpenPlayback(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := pb.Mode(ctx); err != nil || m.Mode != spice.AudioModeRaw {
			t.Fatalf("playback MODE %+v, %v; want raw", m, err)
		}
		if _, err := g.Command(ctx, guestproto.CmdPlay, "freq", "1000", "ms", "500"); err != nil {
			t.Fatal(err)
		}
		st, err := pb.Start(ctx)
		if err != nil || st != (spice.AudioStart{Channels: 2, Format: spice.AudioFormatS16, Frequency: 48000, Time: st.Time}) {
			t.Fatalf("unexpected PLAYBACK_START %+v, %v", st, err)
		}
		if err := pb.WaitStops(ctx, 1); err != nil {
			t.Fatal(err)
		}
		pcm := pb.Buffered()
		freq, lead := toneOf(pcm)
		t.Logf("playback: %d bytes (want 96000), %d frames of leading silence, %.1f Hz", len(pcm), lead, freq)
		if len(pcm) < 96000*9/10 || math.Abs(freq-1000) > 50 {
			t.Errorf("playback of a 0.5 s 1 kHz tone: %d bytes at %.1f Hz", len(pcm), freq)
		}

		rec, err := s.OpenRecord(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.Command(ctx, guestproto.CmdCaptureStart); err != nil {
			t.Fatal(err)
		}
		if rs, err := rec.WaitStart(ctx); err != nil || rs != (spice.AudioStart{Channels: 2, Format: spice.AudioFormatS16, Frequency: 48000}) {
			t.Fatalf("unexpected RECORD_START %+v, %v", rs, err)
		}
		rec.SendMode(0, spice.AudioModeRaw)
		rec.SendStartMark(0)
		// The ticker paces load: one second of samples goes at the rate
		// the guest records them, as a microphone's would (qemu's record
		// buffer holds a few periods and drops the rest).
		tick := time.NewTicker(10 * time.Millisecond)
		n := 0
		for ; n < 48000; n += 480 {
			<-tick.C
			if err := rec.SendPCM(0, tone(1000, n, 480), 0); err != nil {
				t.Fatal(err)
			}
		}
		tick.Stop()
		ack, err := g.Command(ctx, guestproto.CmdCaptureStop)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := strconv.ParseFloat(ack.Value("freq_hz"), 64)
		t.Logf("record: sent %d frames; the guest captured %s frames, %s after leading silence, at %s dBFS", n, ack.Value("frames"), ack.Value("freq_hz"), ack.Value("rms_dbfs"))
		if math.Abs(f-1000) > 50 {
			t.Errorf("the guest recorded %.1f Hz, want 1000 ± 50", f)
		}
	})
	t.Logf("all in %v", time.Since(start).Round(time.Millisecond))
}

// toneOf measures the left channel of stereo S16 PCM after its leading
// silence: frequency by zero crossings (48 kHz), and the silent frames.
func toneOf(pcm []byte) (freq float64, lead int) {
	frames := len(pcm) / 4
	left := make([]float64, frames)
	for i := range frames {
		left[i] = float64(int16(uint16(pcm[4*i]) | uint16(pcm[4*i+1])<<8))
	}
	for lead < frames && math.Abs(left[lead]) < 328 {
		lead++
	}
	end := frames
	for end > lead && math.Abs(left[end-1]) < 328 {
		end--
	}
	sig := left[lead:end]
	crossings := 0
	for i := 1; i < len(sig); i++ {
		if (sig[i-1] < 0) != (sig[i] < 0) {
			crossings++
		}
	}
	if len(sig) < 2 {
		return 0, lead
	}
	return float64(crossings) / 2 / (float64(len(sig)) / 48000), lead
}

// tone is frames of a stereo S16 sine at freq Hz (48 kHz), from frame
// from on, at half scale.
func tone(freq float64, from, frames int) []byte {
	b := make([]byte, 4*frames)
	for i := range frames {
		v := uint16(int16(math.Round(16384 * math.Sin(2*math.Pi*freq*float64(from+i)/48000))))
		b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(v), byte(v>>8), byte(v), byte(v>>8)
	}
	return b
}

// TestIntegrationLinuxTablet: with one display channel and a USB tablet
// (and no agent), spice-server offers client mouse mode through the
// tablet: a MOUSE_POSITION becomes an absolute tablet event in the guest,
// scaled to the tablet's 0..32767 over the surface.
func TestIntegrationLinuxTablet(t *testing.T) {
	needLinuxGuest(t)
	vm := startVM(t, qemu.LinuxGuest(), qemu.Channels(qemu.Tablet()))
	ctx := ctxT(t, 3*time.Minute)
	if err := vm.WaitFor(ctx, qemu.ForAgentReady()); err != nil {
		t.Fatal(err)
	}
	g, err := qemu.DialGuest(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ticket, err := vm.SetTicket(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ep := vm.Endpoint()
	s, err := (&spice.Dialer{Host: ep.HostIP, Port: ep.Port, Password: ticket}).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.OpenInputs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.OpenDisplay(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitFor(ctx, spice.MsgDisplaySurfaceCreate); err != nil {
		t.Fatal(err)
	}
	if err := s.RequestMouseMode(ctx, spice.MouseModeClient); err != nil {
		t.Fatal(err)
	}
	sc := d.Surface()
	x, y := sc.Width/4, sc.Height/4
	// No guest event says when its agent opened the tablet's evdev node
	// (USB enumeration can end after the ready line), and evdev drops
	// what arrives before: the position is sent again every second,
	// moving by one pixel so the kernel never drops it as a repeat,
	// until the guest reports one.
	var ev guestproto.Event
	for i := uint32(0); ; i++ {
		if err := in.Position(ctx, x+i%2, y, 0); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		ev, err = g.WaitEvent(wctx, guestproto.TypeMouse, func(e guestproto.Event) bool { return e.Value("x") != "" })
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no tablet event in the guest: %v", err)
		}
	}
	gx, _ := ev.Int("x")
	gy, _ := ev.Int("y")
	if math.Abs(float64(gx)-32767/4) > 64 || math.Abs(float64(gy)-32767/4) > 64 {
		t.Errorf("position (%d, %d) of a %dx%d surface reached the tablet as (%d, %d), want about (8191, 8191)", x, y, sc.Width, sc.Height, gx, gy)
	}
	t.Logf("position (%d, %d) → %s", x, y, ev)
}
