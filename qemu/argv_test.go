package qemu

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

const (
	testUUID  = "6f1c5a3e-2b7d-4c9e-8a10-3d5e7f9a1b2c"
	testState = "/tmp/sh-123456"
	testDisk  = "/tmp/spice-harness-guest-0123456789ab.img"
)

func TestArgvGolden(t *testing.T) {
	t.Setenv(EnvQemu, "")
	t.Setenv(EnvAccel, "")
	base := []Option{UUID(testUUID), Name("vm1")}
	tests := []struct {
		name string
		opts []Option
		spec launchSpec
	}{
		{"default-tcg", nil, launchSpec{Accel: AccelTCG, Port: 5930}},
		{"kvm-q35-qxl", []Option{Machine("q35"), Memory(256), VGA("qxl")}, launchSpec{Accel: AccelKVM, Port: 5931}},
		{"tls", nil, launchSpec{Accel: AccelTCG, Port: 5932, TLSPort: 5933}},
		{"addr-extra", []Option{SPICEAddr("::1"), ExtraArgs("-device", "virtio-rng-pci", "-S")}, launchSpec{Accel: AccelTCG, Port: 5934}},
		{"comma-disk", nil, launchSpec{Accel: AccelTCG, Port: 5935, Disk: "/srv/images/a,b.qcow2"}},
		{"all-channels", []Option{AllChannels()}, launchSpec{Accel: AccelTCG, Port: 5936}},
		{"agent-only", []Option{Channels(AgentChannel())}, launchSpec{Accel: AccelTCG, Port: 5937}},
		{"usb-and-ports", []Option{Channels(USBRedirChannels(3), Tablet(), PortChannel("org.example.a"), PortChannel("org.example.b")), VGA("qxl"), Channels(DisplayHeads(3), StreamingVideo("filter"))}, launchSpec{Accel: AccelTCG, Port: 5938}},
		{"linux-guest", []Option{testLinuxGuest, VGA("qxl"), AllChannels()}, launchSpec{Accel: AccelTCG, Port: 5939}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newConfig(append(base, tt.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			s := tt.spec
			s.Binary = "/usr/bin/qemu-system-x86_64"
			s.StateDir = testState
			if s.Disk == "" {
				s.Disk = testDisk
			}
			argv, err := c.argv(s)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "argv-"+tt.name+".golden"), strings.Join(argv, "\n")+"\n")
			for _, a := range argv {
				if strings.Contains(a, "password") || strings.Contains(a, "disable-ticketing") {
					t.Errorf("argv must not set a password or disable ticketing: %q", a)
				}
			}
		})
	}
}

// golden compares got with the golden file at path (rewriting it with
// -update).
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./qemu -run %s -update)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("unexpected %s (-want +got):\n%s", filepath.Base(path), diff)
	}
}

// testLinuxGuest is LinuxGuest with a fixed image, for goldens.
func testLinuxGuest(c *config) error {
	c.linux = &linuxBoot{Kernel: "/cache/kernel-1/vmlinux", Initrd: "/cache/image-abc/initramfs.cpio", Append: []string{"console=ttyS0", "quiet", "qxl.num_heads=1"}}
	return nil
}

func TestPartsValidate(t *testing.T) {
	long := "/" + strings.Repeat("d", 100) + "/qmp.sock"
	tests := []struct {
		name string
		p    part
		ok   bool
	}{
		{"machine ok", machinePart{"pc", AccelTCG}, true},
		{"machine auto accel", machinePart{"pc", AccelAuto}, false},
		{"machine bad type", machinePart{"pc,accel=kvm", AccelTCG}, false},
		{"memory low", memoryPart{4}, false},
		{"memory ok", memoryPart{32}, true},
		{"vga bad", vgaPart{"cga"}, false},
		{"identity bad name", identityPart{"a b", testUUID}, false},
		{"identity bad uuid", identityPart{"a", "nope"}, false},
		{"spice port 0", spicePart{Addr: "127.0.0.1"}, false},
		{"spice bad addr", spicePart{Addr: "localhost", Port: 1}, false},
		{"spice tls no dir", spicePart{Addr: "127.0.0.1", Port: 1, TLSPort: 2}, false},
		{"spice tls same port", spicePart{Addr: "127.0.0.1", Port: 1, TLSPort: 1, X509Dir: "/x"}, false},
		{"spice tls ok", spicePart{Addr: "127.0.0.1", Port: 1, TLSPort: 2, X509Dir: "/x"}, true},
		{"qmp relative", qmpPart{"qmp.sock"}, false},
		{"qmp too long", qmpPart{long}, false},
		{"qmp comma", qmpPart{"/a,b/qmp.sock"}, false},
		{"serial relative", serialPart{"serial.log"}, false},
		{"drive format", drivePart{"/a.img", "vmdk", "ide"}, false},
		{"drive bus", drivePart{"/a.img", "raw", "virtio"}, false},
		{"drive ok", drivePart{"/a.img", "raw", "ide"}, true},
		{"kernel ok", kernelPart{"/k", "/i", []string{"console=ttyS0", "quiet", "a.b=1,2"}}, true},
		{"kernel relative", kernelPart{"k", "/i", nil}, false},
		{"kernel append space", kernelPart{"/k", "/i", []string{"console=ttyS0 init=/bin/sh"}}, false},
		{"kernel append quote", kernelPart{"/k", "/i", []string{`a="b"`}}, false},
		{"control relative", controlPortPart{"ctl.sock"}, false},
		{"control comma", controlPortPart{"/a,b/ctl.sock"}, false},
		{"control ok", controlPortPart{"/s/ctl.sock"}, true},
		{"extra NUL", extraPart{"a\x00b"}, false},
		{"spice streaming bad", spicePart{Addr: "127.0.0.1", Port: 1, Streaming: "some"}, false},
		{"spice streaming ok", spicePart{Addr: "127.0.0.1", Port: 1, Streaming: "all"}, true},
		{"agent ok", serialPortPart{"spicevmc", "chr0", "vdagent", "vser0", AgentPortName}, true},
		{"agent wrong port", serialPortPart{"spicevmc", "chr0", "vdagent", "vser0", "org.example.a"}, false},
		{"spiceport ok", serialPortPart{"spiceport", "chr0", "org.example.a", "vser0", "org.example.a"}, true},
		{"webdav ok", serialPortPart{"spiceport", "chr0", WebDAVPortName, "vser0", WebDAVPortName}, true},
		{"spiceport names differ", serialPortPart{"spiceport", "chr0", "org.example.a", "vser0", "org.example.b"}, false},
		{"spiceport comma", serialPortPart{"spiceport", "chr0", "a,b", "vser0", "a,b"}, false},
		{"chardev id comma", serialPortPart{"spiceport", "chr,0", "org.example.a", "vser0", "org.example.a"}, false},
		{"usb-redir bad id", usbRedirPart{"chr0", "0redir", "usb0"}, false},
		{"usb-redir ok", usbRedirPart{"chr0", "redir0", "usb0"}, true},
		{"smartcard ok", smartcardPart{"ccid0", "chr1", "usb0"}, true},
		{"audio ok", audioPart{"snd0", "hda0"}, true},
		{"audio bad id", audioPart{"snd 0", "hda0"}, false},
		{"head ok", headPart{"video1"}, true},
		{"tablet bad bus", tabletPart{"tablet0", ""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("unexpected Validate result (-want +got):\n%s", cmp.Diff(tt.ok, err == nil))
			}
			if err != nil && !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate error %v does not match ErrInvalidConfig", err)
			}
		})
	}
}

func TestArgvRejectsInvalidPart(t *testing.T) {
	c, err := newConfig(UUID(testUUID))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.argv(launchSpec{Binary: "q", Accel: AccelTCG, StateDir: testState, Disk: testDisk}) // port 0
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "-spice port" {
		t.Fatalf("unexpected error for port 0: %v", err)
	}
}
