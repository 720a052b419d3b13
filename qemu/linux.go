package qemu

import (
	"errors"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spiceharness/spiceharness/internal/guestimage"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// LinuxGuestMemoryMiB is the RAM a Linux guest gets unless Memory says
// otherwise: the kernel, the unpacked initramfs and the drivers' buffers
// (two qxl heads, HDA) fit with room to spare.
const LinuxGuestMemoryMiB = 256

// linuxBoot is a kernel booted directly (-kernel/-initrd/-append) with
// the agent's control port.
type linuxBoot struct {
	Kernel, Initrd string
	Append         []string
}

// LinuxGuest boots the Linux test guest instead of the built-in boot
// sector: the image `make guest` (go run ./cmd/harness guest build)
// last built in HARNESS_GUEST_DIR (default ~/.cache/spice-harness/guest),
// with its agent's control port, a virtio-serial port named
// org.spice-harness.control on a unix socket in the VM's state dir. Wait
// for it with ForAgentReady and command it with DialGuest. Without an
// image it fails naming `make guest`.
//
// The guest's devices are those of the Channels options (its agent
// reports what it finds), plus VGA("qxl") for a qxl first head. The
// default accelerator for it is TCG: see the package doc.
func LinuxGuest() Option { return LinuxGuestFrom("") }

// LinuxGuestFrom is LinuxGuest with the image cache at dir ("" = the
// default).
func LinuxGuestFrom(dir string) Option {
	return func(c *config) error {
		img, err := guestimage.Find(dir)
		if err != nil {
			ce := &ConfigError{Field: "LinuxGuest", Value: dir, Reason: err.Error()}
			if errors.Is(err, guestimage.ErrNoImage) {
				ce.Err = guestimage.ErrNoImage
			}
			return ce
		}
		c.linux = &linuxBoot{Kernel: img.Kernel, Initrd: img.Initrd, Append: img.Append}
		return nil
	}
}

// ErrNoGuestImage: LinuxGuest found no built image (build it with
// `make guest`). A *ConfigError from LinuxGuest matches it.
var ErrNoGuestImage = guestimage.ErrNoImage

// kernelPart is -kernel, -initrd and -append: each parameter is checked
// on its own and joined with single spaces.
type kernelPart struct {
	Kernel, Initrd string
	Append         []string
}

var kernelParamRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(=[A-Za-z0-9_.,:/+=-]*)?$`)

func (p kernelPart) Validate() error {
	for _, f := range []struct{ opt, path string }{{"-kernel", p.Kernel}, {"-initrd", p.Initrd}} {
		if !filepath.IsAbs(f.path) {
			return configErr(f.opt, f.path, "want an absolute path")
		}
	}
	for _, a := range p.Append {
		if !kernelParamRE.MatchString(a) {
			return configErr("-append", a, "want one kernel parameter: name or name=value, no spaces or quotes")
		}
	}
	return nil
}

func (p kernelPart) Args() []string {
	return []string{"-kernel", p.Kernel, "-initrd", p.Initrd, "-append", strings.Join(p.Append, " ")}
}

// controlPortPart is the agent's control port: a virtio-serial
// controller of its own (so it does not depend on which channels the VM
// offers), a unix-socket chardev qemu listens on, and the named port.
type controlPortPart struct{ Socket string }

const (
	controlSocketName = "ctl.sock"
	controlBusID      = "ctlser"
	controlChardevID  = "ctl"
)

func (p controlPortPart) Validate() error {
	if !filepath.IsAbs(p.Socket) {
		return configErr("-chardev socket", p.Socket, "want an absolute path")
	}
	if len(p.Socket) > maxUnixPath {
		return configErr("-chardev socket", p.Socket, "unix socket path is %d bytes, more than %d (use a shorter state root)", len(p.Socket), maxUnixPath)
	}
	if strings.Contains(p.Socket, ",") {
		return configErr("-chardev socket", p.Socket, "a comma in the socket path")
	}
	return nil
}

func (p controlPortPart) Args() []string {
	return []string{
		"-device", "virtio-serial-pci,id=" + controlBusID,
		"-chardev", "socket,id=" + controlChardevID + ",path=" + p.Socket + ",server=on,wait=off",
		"-device", "virtserialport,bus=" + busOf(controlBusID) + ",chardev=" + controlChardevID + ",name=" + guestproto.PortControl,
	}
}

// ControlSocket is the unix socket of the Linux guest agent's control
// port ("" when the VM does not boot the Linux guest).
func (p *Process) ControlSocket() string {
	if p.cfg.linux == nil || p.stateDir == "" {
		return ""
	}
	return filepath.Join(p.stateDir, controlSocketName)
}
