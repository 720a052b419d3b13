package qemu

import (
	"errors"
	"fmt"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// libvirtVideo maps the VGA option to libvirt's video model names.
var libvirtVideo = map[string]string{"std": "vga", "qxl": "qxl", "virtio": "virtio", "cirrus": "cirrus"}

// expiredPasswdValidTo is a passwdValidTo long past: the throwaway
// passwd is expired from the first moment.
const expiredPasswdValidTo = "1970-01-01T00:00:01"

// domainXML renders the transient domain: one vCPU, the disk (copied
// built-in guest, or the given image behind <transient/>; on a remote
// host the VM's overlay volume), the serial log as a file (serial "": a
// pty), SPICE graphics on the SPICE address, no USB (unless a channel
// needs it), no balloon, the Channels devices, and ExtraArgs/Env as
// <qemu:commandline>.
//
// libvirt turns SPICE ticketing off when <graphics> has no passwd, so
// the domain gets a random throwaway passwd that is already expired and
// never revealed: every client is refused until SetTicket.
func (c *config) domainXML(accel Accelerator, disk string, transient bool, serial, emulator string) (string, error) {
	typ := "qemu"
	if accel == AccelKVM {
		typ = "kvm"
	}
	target := &libvirtxml.DomainDiskTarget{Dev: "hda", Bus: "ide"}
	if c.machine == "q35" || strings.HasPrefix(c.machine, "pc-q35") {
		target = &libvirtxml.DomainDiskTarget{Dev: "sda", Bus: "sata"} // q35 has no IDE
	}
	d := &libvirtxml.DomainDisk{
		Device: "disk",
		Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: diskFormat(disk)},
		Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: disk}},
		Target: target,
	}
	if transient {
		d.Transient = &libvirtxml.DomainDiskTransient{}
	}
	spice := &libvirtxml.DomainGraphicSpice{
		AutoPort:      "yes",
		Listen:        c.spiceAddr,
		Listeners:     []libvirtxml.DomainGraphicListener{{Address: &libvirtxml.DomainGraphicListenerAddress{Address: c.spiceAddr}}},
		Passwd:        newTicket(),
		PasswdValidTo: expiredPasswdValidTo,
	}
	if c.spicePort != 0 {
		spice.Port, spice.AutoPort = c.spicePort, "no"
	}
	if c.isRemote() && !c.host.tls {
		// A host whose libvirtd has spice_tls = 1 would also open a TLS
		// port with its certificate; a lane that did not ask for TLS gets
		// exactly the plain port.
		spice.DefaultMode = "insecure"
	}
	port := uint(0)
	dom := &libvirtxml.Domain{
		Type:   typ,
		Name:   c.name,
		UUID:   c.uuid,
		Memory: &libvirtxml.DomainMemory{Value: uint(c.memoryMiB), Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Arch: "x86_64", Machine: c.machine, Type: "hvm"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}},
		},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Emulator:    emulator,
			Disks:       []libvirtxml.DomainDisk{*d},
			Serials:     []libvirtxml.DomainSerial{{Source: serialSource(serial), Target: &libvirtxml.DomainSerialTarget{Port: &port}}},
			Graphics:    []libvirtxml.DomainGraphic{{Spice: spice}},
			Videos:      []libvirtxml.DomainVideo{{Model: libvirtxml.DomainVideoModel{Type: libvirtVideo[c.vga]}}},
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			MemBalloon:  &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	c.channels.addToDomain(dom.Devices, spice)
	if len(c.extra) > 0 || len(c.env) > 0 {
		cl := &libvirtxml.DomainQEMUCommandline{}
		for _, a := range c.extra {
			cl.Args = append(cl.Args, libvirtxml.DomainQEMUCommandlineArg{Value: a})
		}
		for _, e := range c.env {
			k, v, _ := strings.Cut(e, "=")
			cl.Envs = append(cl.Envs, libvirtxml.DomainQEMUCommandlineEnv{Name: k, Value: v})
		}
		dom.QEMUCommandline = cl
	}
	s, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("qemu: domain XML: %w", err)
	}
	return s, nil
}

// serialSource is the serial port's backend: the file at path, or a pty
// on the host for "" (a remote host's serial comes back as a console
// stream).
func serialSource(path string) *libvirtxml.DomainChardevSource {
	if path == "" {
		return &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}
	}
	return &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{Path: path}}
}

// spicePortFromXML reads the SPICE port of a running domain from its
// live XML (with autoport, libvirt writes the port it chose there).
func spicePortFromXML(s string) (int, error) {
	port, _, err := spicePortsFromXML(s)
	return port, err
}

// spicePortsFromXML reads the plain and TLS SPICE ports of a running
// domain (tlsPort is 0 when its libvirtd has no spice_tls).
func spicePortsFromXML(s string) (port, tlsPort int, err error) {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(s); err != nil {
		return 0, 0, fmt.Errorf("domain XML: %w", err)
	}
	if dom.Devices != nil {
		for _, g := range dom.Devices.Graphics {
			if g.Spice != nil && g.Spice.Port > 0 {
				return g.Spice.Port, max(g.Spice.TLSPort, 0), nil
			}
		}
	}
	return 0, 0, errors.New("domain XML: no SPICE graphics with a port")
}
