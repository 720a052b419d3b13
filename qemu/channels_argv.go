package qemu

import (
	"regexp"
	"strconv"
)

// idAlloc hands out every device, bus and chardev id of one argv: one
// counter per prefix, in argv order, so ids never collide and goldens
// stay stable.
type idAlloc map[string]int

func (a idAlloc) next(prefix string) string {
	n := a[prefix]
	a[prefix] = n + 1
	return prefix + strconv.Itoa(n)
}

var devIDRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)

// checkIDs validates device/chardev ids for the -device or -chardev
// option field.
func checkIDs(field string, ids ...string) error {
	for _, id := range ids {
		if !devIDRE.MatchString(id) {
			return configErr(field, id, "want an id of [A-Za-z][A-Za-z0-9_-]")
		}
	}
	return nil
}

// busOf is the name qemu gives the first bus of a device with that id.
func busOf(id string) string { return id + ".0" }

// usbControllerPart is the xHCI controller every USB channel device
// sits on, with 8 ports per speed (the default 4 would not hold the
// tablet, the smartcard reader and MaxUSBRedir redirected devices).
type usbControllerPart struct{ ID string }

func (p usbControllerPart) Validate() error { return checkIDs("-device qemu-xhci", p.ID) }
func (p usbControllerPart) Args() []string {
	return []string{"-device", "qemu-xhci,id=" + p.ID + ",p2=8,p3=8"}
}

// virtioSerialPart is the virtio-serial controller of the agent, WebDAV
// and port channels' ports.
type virtioSerialPart struct{ ID string }

func (p virtioSerialPart) Validate() error { return checkIDs("-device virtio-serial-pci", p.ID) }
func (p virtioSerialPart) Args() []string {
	return []string{"-device", "virtio-serial-pci,id=" + p.ID}
}

// serialPortPart is a SPICE chardev and the virtio-serial port the
// guest opens on it. Backend spicevmc with Name "vdagent" is the agent;
// backend spiceport names its channel (Name = PortName).
type serialPortPart struct {
	Backend    string // spicevmc | spiceport
	Chardev    string
	Name       string // the chardev's name=
	Controller string // the virtio-serial controller's id
	PortName   string // the virtserialport's name= (what the guest sees)
}

func (p serialPortPart) Validate() error {
	field := "-chardev " + p.Backend
	switch {
	case p.Backend == "spicevmc" && p.Name == "vdagent" && p.PortName == AgentPortName:
	case p.Backend == "spiceport" && p.Name == p.PortName && (p.Name == WebDAVPortName || badPortName(p.Name) == ""):
	default:
		return configErr(field, p.Name+" → "+p.PortName, "want spicevmc vdagent → %s, or a spiceport whose name is its port's", AgentPortName)
	}
	return checkIDs(field, p.Chardev, p.Controller)
}

func (p serialPortPart) Args() []string {
	return []string{
		"-chardev", p.Backend + ",id=" + p.Chardev + ",name=" + p.Name,
		"-device", "virtserialport,bus=" + busOf(p.Controller) + ",chardev=" + p.Chardev + ",name=" + p.PortName,
	}
}

// usbRedirPart is one usbredir channel: a usb-redir device on a
// spicevmc chardev named usbredir (spice-server numbers the channels
// in argv order).
type usbRedirPart struct{ Chardev, ID, Controller string }

func (p usbRedirPart) Validate() error {
	return checkIDs("-device usb-redir", p.Chardev, p.ID, p.Controller)
}

func (p usbRedirPart) Args() []string {
	return []string{
		"-chardev", "spicevmc,id=" + p.Chardev + ",name=usbredir",
		"-device", "usb-redir,chardev=" + p.Chardev + ",id=" + p.ID + ",bus=" + busOf(p.Controller),
	}
}

// smartcardPart is the smartcard channel: a usb-ccid reader and a
// ccid-card-passthru card on a spicevmc chardev named smartcard.
type smartcardPart struct{ Reader, Chardev, Controller string }

func (p smartcardPart) Validate() error {
	return checkIDs("-device usb-ccid", p.Reader, p.Chardev, p.Controller)
}

func (p smartcardPart) Args() []string {
	return []string{
		"-device", "usb-ccid,id=" + p.Reader + ",bus=" + busOf(p.Controller),
		"-chardev", "spicevmc,id=" + p.Chardev + ",name=smartcard",
		"-device", "ccid-card-passthru,chardev=" + p.Chardev + ",bus=" + busOf(p.Reader),
	}
}

// audioPart is playback and record: the spice audio backend, an HDA
// controller and a duplex codec (line out and line in).
type audioPart struct{ Audiodev, Controller string }

func (p audioPart) Validate() error { return checkIDs("-audiodev spice", p.Audiodev, p.Controller) }

func (p audioPart) Args() []string {
	return []string{
		"-audiodev", "spice,id=" + p.Audiodev,
		"-device", "intel-hda,id=" + p.Controller,
		"-device", "hda-duplex,audiodev=" + p.Audiodev + ",bus=" + busOf(p.Controller),
	}
}

// headPart is one more display head: a secondary qxl device.
type headPart struct{ ID string }

func (p headPart) Validate() error { return checkIDs("-device qxl", p.ID) }
func (p headPart) Args() []string  { return []string{"-device", "qxl,id=" + p.ID} }

// tabletPart is a USB tablet (absolute pointer: client mouse mode).
type tabletPart struct{ ID, Controller string }

func (p tabletPart) Validate() error { return checkIDs("-device usb-tablet", p.ID, p.Controller) }
func (p tabletPart) Args() []string {
	return []string{"-device", "usb-tablet,id=" + p.ID + ",bus=" + busOf(p.Controller)}
}

// channelParts lists the parts of the Channels options, in argv order,
// with ids from one allocator.
func (s *channelSet) parts() []part {
	ids := idAlloc{}
	var out []part
	if s.virtioSerial() {
		vser := ids.next("vser")
		out = append(out, virtioSerialPart{ID: vser})
		if s.agent {
			out = append(out, serialPortPart{Backend: "spicevmc", Chardev: ids.next("chr"), Name: "vdagent", Controller: vser, PortName: AgentPortName})
		}
		if s.webdav {
			out = append(out, serialPortPart{Backend: "spiceport", Chardev: ids.next("chr"), Name: WebDAVPortName, Controller: vser, PortName: WebDAVPortName})
		}
		for _, name := range s.ports {
			out = append(out, serialPortPart{Backend: "spiceport", Chardev: ids.next("chr"), Name: name, Controller: vser, PortName: name})
		}
	}
	if s.usb() {
		usb := ids.next("usb")
		out = append(out, usbControllerPart{ID: usb})
		for range s.usbredir {
			out = append(out, usbRedirPart{Chardev: ids.next("chr"), ID: ids.next("redir"), Controller: usb})
		}
		if s.smartcard {
			out = append(out, smartcardPart{Reader: ids.next("ccid"), Chardev: ids.next("chr"), Controller: usb})
		}
		if s.tablet {
			out = append(out, tabletPart{ID: ids.next("tablet"), Controller: usb})
		}
	}
	if s.audio {
		out = append(out, audioPart{Audiodev: ids.next("snd"), Controller: ids.next("hda")})
	}
	ids.next("video") // video0 is the VGA device
	for i := 1; i < s.heads; i++ {
		out = append(out, headPart{ID: ids.next("video")})
	}
	return out
}
