package guestagent

import (
	"bytes"
	"image/color"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// TestKernelStructSizes pins the ioctl structs to the sizes of their C
// definitions on x86-64 (the size is part of each ioctl number).
func TestKernelStructSizes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"drm_mode_card_res", unsafe.Sizeof(drmModeCardRes{}), 64},
		{"drm_mode_modeinfo", unsafe.Sizeof(drmModeInfo{}), 68},
		{"drm_mode_get_connector", unsafe.Sizeof(drmModeGetConnector{}), 80},
		{"drm_mode_get_encoder", unsafe.Sizeof(drmModeGetEncoder{}), 20},
		{"drm_mode_create_dumb", unsafe.Sizeof(drmModeCreateDumb{}), 32},
		{"drm_mode_map_dumb", unsafe.Sizeof(drmModeMapDumb{}), 16},
		{"drm_mode_fb_cmd", unsafe.Sizeof(drmModeFbCmd{}), 28},
		{"drm_mode_crtc", unsafe.Sizeof(drmModeCrtc{}), 104},
		{"drm_mode_fb_dirty_cmd", unsafe.Sizeof(drmModeFbDirtyCmd{}), 24},
		{"snd_pcm_hw_params", unsafe.Sizeof(sndHwParams{}), 608},
		{"snd_xferi", unsafe.Sizeof(sndXferi{}), 24},
		{"usbdevfs_bulktransfer", unsafe.Sizeof(usbdevfsBulk{}), 24},
	} {
		if tc.got != tc.want {
			t.Errorf("sizeof(struct %s) = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	if ioctlGetResources != 0xc04064a0 || sndHwParamsIoctl != 0xc2604111 || usbdevfsBulkIoctl != 0xc0185502 {
		t.Errorf("ioctl numbers: GETRESOURCES %#x HW_PARAMS %#x USBDEVFS_BULK %#x", ioctlGetResources, sndHwParamsIoctl, usbdevfsBulkIoctl)
	}
}

// TestPaintMatchesPicture: what the agent writes into an XRGB8888
// buffer is guestproto.Picture, byte for byte.
func TestPaintMatchesPicture(t *testing.T) {
	const w, h, pitch = 40, 24, 40*4 + 16
	for head := range 2 {
		mem := make([]byte, pitch*h)
		paint(mem, pitch, head, w, h)
		want := guestproto.Picture(head, w, h)
		for y := range h {
			for x := range w {
				p := mem[y*pitch+4*x:]
				if got := (color.RGBA{p[2], p[1], p[0], 255}); got != want.RGBAAt(x, y) {
					t.Fatalf("head %d (%d,%d): painted %v, picture %v", head, x, y, got, want.RGBAAt(x, y))
				}
			}
		}
	}
}

func TestAnalyseTone(t *testing.T) {
	const rate = 48000
	pcm := append(make([]byte, 4*480), pcmTone(rate, 1000, rate/2)...) // 10 ms silence, 0.5 s tone
	kv := analyse(pcm, rate)
	ev := guestproto.NewEvent(0, guestproto.TypeAudio, kv...)
	freq, _ := strconv.ParseFloat(ev.Value("freq_hz"), 64)
	rms, _ := strconv.ParseFloat(ev.Value("rms_dbfs"), 64)
	if math.Abs(freq-1000) > 5 {
		t.Errorf("freq_hz=%v, want 1000 ± 5", freq)
	}
	if math.Abs(rms-(-9.0)) > 0.2 { // a half-scale sine: 20·log10(0.5/√2)
		t.Errorf("rms_dbfs=%v, want -9.0 ± 0.2", rms)
	}
	if ev.Value("frames") != strconv.Itoa(480+rate/2) || ev.Value("lead_silence") == "0" {
		t.Errorf("unexpected analysis %s", ev)
	}
	silent := guestproto.NewEvent(0, guestproto.TypeAudio, analyse(nil, rate)...)
	if silent.Value("frames") != "0" || silent.Value("freq_hz") != "0.0" {
		t.Errorf("unexpected analysis of nothing %s", silent)
	}
}

func TestParseUevent(t *testing.T) {
	msg := []byte("add@/devices/pci0000:00/usb1/1-3\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/usb1/1-3\x00SUBSYSTEM=usb\x00DEVTYPE=usb_device\x00PRODUCT=8e6/4433/101\x00BUSNUM=001\x00DEVNUM=002\x00")
	ev, ok := parseUevent(msg)
	if !ok || ev.Action != "add" || ev.Env["SUBSYSTEM"] != "usb" || ev.Env["PRODUCT"] != "8e6/4433/101" {
		t.Errorf("unexpected uevent %+v", ev)
	}
	if _, ok := parseUevent([]byte("libudev\x00junk")); ok {
		t.Error("parseUevent took a message that is not the kernel's")
	}
	if !isCCID("11/0/0") || isCCID("3/0/0") || isCCID("") {
		t.Error("isCCID misreads INTERFACE")
	}
	if pad4("8e6") != "08e6" || cardIndex("dri/card1") != 1 || cardIndex("renderD128") != -1 {
		t.Error("pad4 or cardIndex misread")
	}
}

func TestPayload(t *testing.T) {
	for _, tc := range []struct {
		cmd  guestproto.Command
		want []byte
		err  string
	}{
		{guestproto.NewCommand("x", 1, "text", "hi there"), []byte("hi there"), ""},
		{guestproto.NewCommand("x", 1, "hex", "00ff"), []byte{0, 0xff}, ""},
		{guestproto.NewCommand("x", 1, "len", "5", "seed", "3"), guestproto.PatternBytes(3, 5), ""},
		{guestproto.NewCommand("x", 1), nil, "want text=…, hex=… or len=N seed=S"},
		{guestproto.NewCommand("x", 1, "len", "-1"), nil, "want 0..64 MiB"},
	} {
		got, err := payload(tc.cmd, "text")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("payload(%s): error %v, want %q", tc.cmd, err, tc.err)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("payload(%s) = %x, %v; want %x", tc.cmd, got, err, tc.want)
		}
	}
}

func TestReporterSurvivesBadInput(t *testing.T) {
	var b bytes.Buffer
	r := &consoleReporter{w: &b}
	r.Event("clipboard", "len", "3", "odd")
	r.Event("ready", "ports", "a b")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	var types []string
	for _, l := range lines {
		ev, err := guestproto.Parse(l)
		if err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		types = append(types, ev.Type)
	}
	if diff := cmp.Diff([]string{guestproto.TypeError, guestproto.TypeReady}, types); diff != "" {
		t.Errorf("unexpected event types (-want +got):\n%s", diff)
	}
}

func TestCmdlineExpect(t *testing.T) {
	got := cmdlineExpect("console=ttyS0 quiet spiceharness.expect=tablet,storage qxl.num_heads=1 spiceharness.expect=x")
	want := []string{"tablet", "storage", "x"}
	if !slices.Equal(got, want) {
		t.Errorf("cmdlineExpect = %q, want %q", got, want)
	}
	if got := cmdlineExpect("console=ttyS0"); got != nil {
		t.Errorf("cmdlineExpect without the parameter = %q, want none", got)
	}
}
