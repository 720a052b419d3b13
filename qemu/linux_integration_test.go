package qemu_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/internal/guestimage"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// linuxBootTimeout bounds the Linux guest's boot to its ready line. It
// takes ~3 s on an idle machine of the CI kind; the machine is shared
// and small, and under a full test run it has taken 30 s.
const linuxBootTimeout = 120 * time.Second

// needLinuxGuest builds the guest image unless the cache has it (make
// test runs `make guest` first, so here it is a cache check).
func needLinuxGuest(t *testing.T) {
	t.Helper()
	needQemu(t)
	ctx := ctxT(t, 10*time.Minute)
	if _, err := guestimage.Ensure(ctx, guestimage.Options{Logf: t.Logf}); err != nil {
		testenv.Missing(t, "the Linux test guest", "run `make guest` on a Debian machine with apt package lists ("+err.Error()+")")
	}
}

func TestIntegrationLinuxGuest(t *testing.T) {
	needLinuxGuest(t)
	start := time.Now()
	vm := startVM(t, qemu.LinuxGuest(), qemu.VGA("qxl"), qemu.AllChannels())
	ctx := ctxT(t, linuxBootTimeout+60*time.Second)
	if err := vm.WaitFor(ctxT(t, linuxBootTimeout), qemu.ForAgentReady()); err != nil {
		t.Fatal(err)
	}
	t.Logf("agent ready %.2f s after Start", time.Since(start).Seconds())
	g, err := qemu.DialGuest(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ready, err := g.WaitEvent(ctx, guestproto.TypeReady, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ready: %s", ready)

	t.Run("ready lists the devices", func(t *testing.T) {
		ports := ready.List("ports")
		for _, want := range []string{guestproto.PortAgent, guestproto.PortWebDAV, guestproto.PortEcho, guestproto.PortControl} {
			if !slices.Contains(ports, want) {
				t.Errorf("ready ports %q lack %s", ports, want)
			}
		}
		if n, err := ready.Int("heads"); err != nil || n != 2 {
			t.Errorf("ready heads=%q, want 2", ready.Value("heads"))
		}
		if len(ready.List("sound")) != 1 {
			t.Errorf("ready sound=%q, want one card (intel-hda)", ready.Value("sound"))
		}
		if !slices.Contains(ready.List("usb"), "xhci_hcd") {
			t.Errorf("ready usb=%q, want the xHCI controller", ready.Value("usb"))
		}
		if !slices.ContainsFunc(ready.List("inputs"), func(s string) bool { return strings.Contains(s, "Tablet") }) {
			t.Errorf("ready inputs=%q, want the USB tablet", ready.Value("inputs"))
		}
	})

	t.Run("draw on each head", func(t *testing.T) {
		for head := range 2 {
			ack, err := g.Command(ctx, guestproto.CmdDraw, "head", strconv.Itoa(head))
			if err != nil {
				t.Fatal(err)
			}
			w, _ := ack.Int("w")
			h, _ := ack.Int("h")
			got := screendump(t, vm, head)
			want := guestproto.Picture(head, int(w), int(h))
			if d := diffPicture(want, got); d != "" {
				t.Errorf("head %d: unexpected screen (-want +got): %s", head, d)
			}
		}
	})

	t.Run("monitors", func(t *testing.T) {
		ack, err := g.Command(ctx, guestproto.CmdMonitors)
		if err != nil {
			t.Fatal(err)
		}
		for head := range 2 {
			ev, err := g.WaitEvent(ctx, guestproto.TypeMonitor, func(e guestproto.Event) bool {
				return e.T >= ack.T-time.Second && e.Value("head") == strconv.Itoa(head)
			})
			if err != nil {
				t.Fatal(err)
			}
			if ev.Value("driver") != "qxl" || ev.Value("status") != "connected" || ev.Value("w") == "0" {
				t.Errorf("head %d: unexpected monitor event %s", head, ev)
			}
		}
	})

	t.Run("keyboard", func(t *testing.T) {
		if err := vm.SendKeys(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		for _, value := range []string{"1", "0"} {
			if _, err := g.WaitEvent(ctx, guestproto.TypeKey, func(e guestproto.Event) bool {
				return e.Value("code") == "30" && e.Value("value") == value // KEY_A
			}); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("tablet", func(t *testing.T) {
		cmd := map[string]any{"execute": "input-send-event", "arguments": map[string]any{"events": []any{
			map[string]any{"type": "abs", "data": map[string]any{"axis": "x", "value": 12000}},
			map[string]any{"type": "abs", "data": map[string]any{"axis": "y", "value": 21000}},
		}}}
		if _, err := vm.Run(ctx, cmd); err != nil {
			t.Fatal(err)
		}
		if _, err := g.WaitEvent(ctx, guestproto.TypeMouse, func(e guestproto.Event) bool {
			return strings.Contains(e.Value("dev"), "Tablet") && e.Value("x") == "12000" && e.Value("y") == "21000"
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("USB storage", func(t *testing.T) {
		// A USB stick plugged in over QMP (no SPICE client needed): the
		// agent loads usb-storage late, reads the medium whole and
		// reports its sha256; storage-read reads it again.
		data := guestproto.PatternBytes(7, 1<<20)
		file := filepath.Join(vm.(*qemu.Process).StateDir(), "stick.img")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		want := hex.EncodeToString(sum[:])
		for _, cmd := range []string{
			`{"execute":"blockdev-add","arguments":{"driver":"raw","node-name":"stick0","read-only":true,"file":{"driver":"file","filename":` + strconv.Quote(file) + `}}}`,
			`{"execute":"device_add","arguments":{"driver":"usb-storage","bus":"usb0.0","drive":"stick0","id":"stick0","serial":"HARNESS0001"}}`,
		} {
			if _, err := vm.Run(ctx, json.RawMessage(cmd)); err != nil {
				t.Fatal(err)
			}
		}
		ev, err := g.WaitEvent(ctx, guestproto.TypeStorage, func(e guestproto.Event) bool { return e.Value("sha256") == want })
		if err != nil {
			t.Fatal(err)
		}
		if ev.Value("bytes") != strconv.Itoa(len(data)) || !strings.HasPrefix(ev.Value("dev"), "sd") {
			t.Errorf("unexpected storage event %s", ev)
		}
		ack, err := g.Command(ctx, guestproto.CmdStorageRead, "dev", ev.Value("dev"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.WaitEvent(ctx, guestproto.TypeStorage, func(e guestproto.Event) bool {
			return e.T > ev.T && e.T <= ack.T && e.Value("sha256") == want
		}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("audio without a client", func(t *testing.T) {
		// Only the mechanics: with no SPICE client the audio backend
		// drops playback and records silence. Tones through a client
		// are the channels tier's.
		if _, err := g.Command(ctx, guestproto.CmdPlay, "freq", "1000", "ms", "200"); err != nil {
			t.Fatal(err)
		}
		if _, err := g.Command(ctx, guestproto.CmdCaptureStart); err != nil {
			t.Fatal(err)
		}
		ack, err := g.Command(ctx, guestproto.CmdCaptureStop)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("capture: %s", ack)
		if _, err := g.WaitEvent(ctx, guestproto.TypeAudio, nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("smartcard reader without a card", func(t *testing.T) {
		_, err := g.Command(ctx, guestproto.CmdSmartcard)
		var ce *qemu.CommandError
		if !errors.As(err, &ce) || !strings.Contains(ce.Ack.Value("err"), "no card") {
			t.Errorf("unexpected error %v, want a *CommandError saying no card", err)
		}
	})

	t.Run("unknown command", func(t *testing.T) {
		_, err := g.Command(ctx, "no-such-command")
		var ce *qemu.CommandError
		if !errors.As(err, &ce) || !strings.Contains(ce.Ack.Value("err"), "unknown command") {
			t.Errorf("unexpected error %v, want a *CommandError saying unknown command", err)
		}
	})
}

// screendump takes a PNG of one head with QMP (head 0 is the primary
// console, the VGA qxl; head 1 the second qxl device, video1).
func screendump(t *testing.T, vm qemu.VM, head int) image.Image {
	t.Helper()
	p, ok := vm.(*qemu.Process)
	if !ok {
		t.Fatalf("screendump needs a qemu child process, have %T", vm)
	}
	file := filepath.Join(p.StateDir(), fmt.Sprintf("head%d.png", head))
	args := map[string]any{"filename": file, "format": "png"}
	if head > 0 {
		args["device"] = "video" + strconv.Itoa(head)
	}
	b, _ := json.Marshal(map[string]any{"execute": "screendump", "arguments": args})
	if _, err := vm.Run(ctxT(t, 30*time.Second), json.RawMessage(b)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// diffPicture compares two pictures pixel by pixel ("" if equal).
func diffPicture(want, got image.Image) string {
	if want.Bounds() != got.Bounds() {
		return cmp.Diff(want.Bounds().String(), got.Bounds().String())
	}
	bad := 0
	first := ""
	b := want.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			wr, wg, wb, _ := want.At(x, y).RGBA()
			gr, gg, gb, _ := got.At(x, y).RGBA()
			if wr>>8 != gr>>8 || wg>>8 != gg>>8 || wb>>8 != gb>>8 {
				if bad == 0 {
					first = fmt.Sprintf("first at (%d,%d): -%v +%v", x, y, want.At(x, y), got.At(x, y))
				}
				bad++
			}
		}
	}
	if bad == 0 {
		return ""
	}
	return fmt.Sprintf("%d pixels differ; %s", bad, first)
}
