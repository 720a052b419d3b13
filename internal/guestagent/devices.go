package guestagent

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// port is a named virtio-serial port.
type port struct {
	Name string // what the host called it
	Dev  string // /dev/vportNpM
}

type found struct {
	ports []port
}

// pciDev is one PCI function as sysfs shows it.
type pciDev struct {
	Path                  string
	Vendor, Device, Class uint32
}

func pciDevices() []pciDev {
	var out []pciDev
	for _, p := range sortedGlob("/sys/bus/pci/devices/*") {
		var d pciDev
		d.Path = p
		fmt.Sscanf(readTrim(p+"/vendor"), "0x%x", &d.Vendor)
		fmt.Sscanf(readTrim(p+"/device"), "0x%x", &d.Device)
		fmt.Sscanf(readTrim(p+"/class"), "0x%x", &d.Class)
		out = append(out, d)
	}
	return out
}

// expectation is one device the agent waits for before ready.
type expectation struct {
	what string
	ok   func() bool
}

// expectations derives what must exist from the PCI devices qemu gave
// the guest: a bound driver's result for each one the image has a
// driver for.
func expectations() []expectation {
	var out []expectation
	for _, d := range pciDevices() {
		d := d
		name := filepath.Base(d.Path)
		switch {
		case d.Vendor == 0x1af4 && (d.Device == 0x1003 || d.Device == 0x1043): // virtio console
			out = append(out, expectation{"virtio-serial ports of " + name, func() bool {
				ps := sortedGlob(d.Path + "/virtio*/virtio-ports/vport*")
				if len(ps) == 0 {
					return false
				}
				for _, p := range ps {
					if readTrim(p+"/name") == "" {
						return false
					}
				}
				return true
			}})
		case d.Class>>8 == 0x0403: // HDA
			out = append(out, expectation{"sound card of " + name, func() bool {
				return len(sortedGlob(d.Path+"/sound/card*/pcmC*")) > 0
			}})
		case d.Class>>8 == 0x0c03: // USB host controller
			out = append(out, expectation{"USB root hub of " + name, func() bool {
				return len(sortedGlob(d.Path+"/usb*")) > 0
			}})
		case d.Vendor == 0x1b36 && d.Device == 0x0100, d.Vendor == 0x1234 && d.Device == 0x1111: // qxl, std VGA
			out = append(out, expectation{"DRM card of " + name, func() bool {
				return len(sortedGlob(d.Path+"/drm/card*")) > 0
			}})
		}
	}
	for _, what := range cmdlineExpect(readTrim("/proc/cmdline")) {
		switch what {
		case "tablet":
			out = append(out, expectation{"the USB tablet's input device", func() bool {
				return slices.ContainsFunc(inputNames(), func(n string) bool { return strings.Contains(n, "Tablet") })
			}})
		}
	}
	return out
}

// cmdlineExpect is the list of spiceharness.expect= on the kernel
// command line: devices the host plugged in that no PCI function shows
// (USB devices enumerate after their hub; the host says what to wait for).
func cmdlineExpect(cmdline string) []string {
	var out []string
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "spiceharness.expect="); ok {
			out = append(out, strings.Split(v, ",")...)
		}
	}
	return out
}

// waitDevices waits until every expected device has appeared, or
// readyDeadline. It re-reads sysfs every 10 ms: the drivers announce
// these with uevents too, but sysfs state is what ready reports, and
// checking it directly cannot miss an event sent before the listener.
func (a *agent) waitDevices() found {
	exp := expectations()
	deadline := time.Now().Add(readyDeadline)
	for {
		var missing []string
		for _, e := range exp {
			if !e.ok() {
				missing = append(missing, e.what)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			a.rep.Event(guestproto.TypeError, "what", "ready", "err", "still missing after "+readyDeadline.String()+": "+strings.Join(missing, "; "))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return found{ports: listPorts()}
}

func listPorts() []port {
	var out []port
	for _, p := range sortedGlob("/sys/class/virtio-ports/vport*") {
		if name := readTrim(p + "/name"); name != "" {
			out = append(out, port{Name: name, Dev: "/dev/" + filepath.Base(p)})
		}
	}
	return out
}

func portNames(ps []port) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// soundCards lists the ALSA cards' ids ("Intel", …).
func soundCards() []string {
	var out []string
	for _, c := range sortedGlob("/sys/class/sound/card*") {
		out = append(out, readTrim(c+"/id"))
	}
	return out
}

// usbControllers lists each USB bus's host controller driver
// (xhci_hcd, ehci-pci, …), one per root hub.
func usbControllers() []string {
	var out []string
	for _, b := range sortedGlob("/sys/bus/usb/devices/usb*") {
		drv, _ := filepath.EvalSymlinks(b + "/../driver")
		out = append(out, filepath.Base(drv))
	}
	return out
}

// inputNames lists the input devices' names, sorted, with spaces kept
// (the value is quoted).
func inputNames() []string {
	var out []string
	for _, d := range sortedGlob("/sys/class/input/input*") {
		out = append(out, strings.ReplaceAll(readTrim(d+"/name"), ",", ";"))
	}
	sort.Strings(out)
	return out
}
