package guestagent

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// uevent is one kernel uevent: the action and its environment.
type uevent struct {
	Action string
	Env    map[string]string
}

// listenUevents opens the kernel's uevent multicast group (what udev
// reads). There is no udev here: devtmpfs makes the nodes, the agent
// reacts to the events.
func listenUevents() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err != nil {
		return -1, fmt.Errorf("netlink socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("netlink bind: %w", err)
	}
	return fd, nil
}

func parseUevent(b []byte) (uevent, bool) {
	parts := bytes.Split(b, []byte{0})
	if len(parts) < 2 || !bytes.Contains(parts[0], []byte("@")) {
		return uevent{}, false
	}
	ev := uevent{Env: map[string]string{}}
	for _, p := range parts[1:] {
		if k, v, ok := strings.Cut(string(p), "="); ok {
			ev.Env[k] = v
		}
	}
	ev.Action = ev.Env["ACTION"]
	return ev, ev.Action != ""
}

// handleUevents dispatches uevents to what reports on them; it runs for
// the agent's whole life.
func (a *agent) handleUevents(fd int) {
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR || err == unix.ENOBUFS {
			continue
		}
		if err != nil {
			errorf(a.rep, "uevent", err)
			return
		}
		ev, ok := parseUevent(buf[:n])
		if !ok {
			continue
		}
		a.uevent(ev)
	}
}

func (a *agent) uevent(ev uevent) {
	e := ev.Env
	switch e["SUBSYSTEM"] {
	case "usb":
		switch {
		case e["DEVTYPE"] == "usb_device" && (ev.Action == "add" || ev.Action == "remove"):
			a.usbEvent(ev)
		case e["DEVTYPE"] == "usb_interface":
			a.usbInterface(ev)
		}
	case "block":
		if e["DEVTYPE"] == "disk" && (ev.Action == "add" || (ev.Action == "change" && e["DISK_MEDIA_CHANGE"] == "1")) {
			go a.readStorage(e["DEVNAME"])
		}
	case "drm":
		if ev.Action == "change" && e["HOTPLUG"] == "1" {
			a.reportMonitors(cardIndex(e["DEVNAME"]))
		}
	case "input":
		if ev.Action == "add" && strings.HasPrefix(e["DEVNAME"], "input/event") {
			go a.readInput("/dev/" + e["DEVNAME"])
		}
	}
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
