package qemu

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"libvirt.org/go/libvirtxml"
)

// TestDomainXML: the transient domain keeps SPICE ticketing on (an
// expired throwaway passwd), listens on the SPICE address only, boots
// the disk behind <transient/>, and carries ExtraArgs and Env in the
// qemu namespace.
func TestDomainXML(t *testing.T) {
	c, err := newConfig(Name("vm1"), UUID("0f7d7a6c-6d9b-4a4e-9c1e-2a5b8c7d9e10"), ExtraArgs("-device", "x"), Env("A=b"), Machine("q35"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.domainXML(AccelKVM, "/tmp/d.qcow2", true, "/tmp/serial.log", "/usr/bin/qemu-system-x86_64")
	if err != nil {
		t.Fatal(err)
	}
	var got libvirtxml.Domain
	if err := got.Unmarshal(s); err != nil {
		t.Fatal(err)
	}
	g := got.Devices.Graphics[0].Spice
	if len(g.Passwd) != TicketLen || g.PasswdValidTo != expiredPasswdValidTo {
		t.Errorf("SPICE passwd: %d bytes valid to %q, want a %d-byte throwaway already expired", len(g.Passwd), g.PasswdValidTo, TicketLen)
	}
	g.Passwd = ""
	port := uint(0)
	want := libvirtxml.Domain{
		Type: "kvm", Name: "vm1", UUID: "0f7d7a6c-6d9b-4a4e-9c1e-2a5b8c7d9e10",
		Memory: &libvirtxml.DomainMemory{Value: DefaultMemoryMiB, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "q35", Type: "hvm"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}},
		},
		OnPoweroff: "destroy", OnReboot: "destroy", OnCrash: "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Emulator: "/usr/bin/qemu-system-x86_64",
			Disks: []libvirtxml.DomainDisk{{
				Device:    "disk",
				Driver:    &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
				Source:    &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: "/tmp/d.qcow2"}},
				Target:    &libvirtxml.DomainDiskTarget{Dev: "sda", Bus: "sata"},
				Transient: &libvirtxml.DomainDiskTransient{},
			}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: "/tmp/serial.log"}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port},
			}},
			Graphics: []libvirtxml.DomainGraphic{{Spice: &libvirtxml.DomainGraphicSpice{
				AutoPort: "yes", Listen: DefaultSPICEAddr, PasswdValidTo: expiredPasswdValidTo,
				Listeners: []libvirtxml.DomainGraphicListener{{Address: &libvirtxml.DomainGraphicListenerAddress{Address: DefaultSPICEAddr}}},
			}}},
			Videos: []libvirtxml.DomainVideo{{Model: libvirtxml.DomainVideoModel{Type: "vga"}}},
			// Unmarshal fills USB for any usb controller.
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none", USB: &libvirtxml.DomainControllerUSB{}}},
			MemBalloon:  &libvirtxml.DomainMemBalloon{Model: "none"},
		},
		QEMUCommandline: &libvirtxml.DomainQEMUCommandline{
			Args: []libvirtxml.DomainQEMUCommandlineArg{{Value: "-device"}, {Value: "x"}},
			Envs: []libvirtxml.DomainQEMUCommandlineEnv{{Name: "A", Value: "b"}},
		},
	}
	if diff := cmp.Diff(&want, &got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".XMLName" }, cmp.Ignore())); diff != "" {
		t.Errorf("unexpected domain (-want +got):\n%s", diff)
	}
}

func TestSpicePortFromXML(t *testing.T) {
	live := `<domain type='qemu'><name>vm1</name><devices>` +
		`<graphics type='vnc' port='5901'/>` +
		`<graphics type='spice' port='5930' autoport='yes' listen='127.0.0.1'><listen type='address' address='127.0.0.1'/></graphics>` +
		`</devices></domain>`
	if port, err := spicePortFromXML(live); err != nil || port != 5930 {
		t.Errorf("spicePortFromXML: %d, %v; want 5930", port, err)
	}
	if _, err := spicePortFromXML(`<domain type='qemu'><devices/></domain>`); err == nil {
		t.Error("no SPICE graphics: want an error")
	}
}

// TestDomainXMLChannels: AllChannels on the libvirt backend gives the
// same devices as on qemu's command line (golden XML; the throwaway
// passwd is blanked).
func TestDomainXMLChannels(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"all-channels", []Option{AllChannels()}},
		{"usb-and-ports", []Option{Channels(USBRedirChannels(3), Tablet(), PortChannel("org.example.a")), VGA("qxl"), Channels(DisplayHeads(3))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newConfig(append([]Option{Name("vm1"), UUID("0f7d7a6c-6d9b-4a4e-9c1e-2a5b8c7d9e10")}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			s, err := c.domainXML(AccelTCG, "/tmp/d.img", false, "/tmp/serial.log", "/usr/bin/qemu-system-x86_64")
			if err != nil {
				t.Fatal(err)
			}
			var dom libvirtxml.Domain
			if err := dom.Unmarshal(s); err != nil {
				t.Fatal(err)
			}
			dom.Devices.Graphics[0].Spice.Passwd = ""
			got, err := dom.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "domain-"+tc.name+".golden.xml"), got+"\n")
		})
	}
}
