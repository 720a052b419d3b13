package qemu

import (
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// A part is one small, typed piece of qemu's command line. Every part
// validates itself; an invalid part fails the whole argv (never dropped
// silently).
type part interface {
	Validate() error
	Args() []string
}

// optValue escapes a value for qemu's option syntax (a comma is doubled).
func optValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// basePart is what every VM has: no defaults, no user config, no
// display window, no network.
type basePart struct{}

func (basePart) Validate() error { return nil }
func (basePart) Args() []string {
	return []string{"-nodefaults", "-no-user-config", "-display", "none", "-nic", "none"}
}

type machinePart struct {
	Type  string
	Accel Accelerator
}

func (p machinePart) Validate() error {
	if !machineRE.MatchString(p.Type) {
		return configErr("-machine", p.Type, "want a machine type such as pc or q35")
	}
	if p.Accel != AccelKVM && p.Accel != AccelTCG {
		return configErr("-accel", p.Accel, "want kvm or tcg (auto is resolved before argv is built)")
	}
	return nil
}

func (p machinePart) Args() []string {
	return []string{"-machine", p.Type, "-accel", string(p.Accel)}
}

type memoryPart struct{ MiB int }

func (p memoryPart) Validate() error {
	if p.MiB < 8 || p.MiB > 1<<20 {
		return configErr("-m", p.MiB, "want 8..1048576 MiB")
	}
	return nil
}

func (p memoryPart) Args() []string { return []string{"-m", strconv.Itoa(p.MiB)} }

type vgaPart struct{ Model string }

func (p vgaPart) Validate() error {
	switch p.Model {
	case "std", "qxl", "virtio", "cirrus":
		return nil
	}
	return configErr("-vga", p.Model, "want std, qxl, virtio or cirrus")
}

func (p vgaPart) Args() []string { return []string{"-vga", p.Model} }

type identityPart struct{ Name, UUID string }

func (p identityPart) Validate() error {
	if !nameRE.MatchString(p.Name) {
		return configErr("-name", p.Name, "want 1-64 characters of [A-Za-z0-9._-]")
	}
	if !uuidRE.MatchString(p.UUID) {
		return configErr("-uuid", p.UUID, "want lower-case 8-4-4-4-12 hex")
	}
	return nil
}

func (p identityPart) Args() []string {
	return []string{"-name", "guest=" + p.Name, "-uuid", p.UUID}
}

// spicePart has no password on purpose: with neither password nor
// disable-ticketing, spice-server has ticketing on and refuses every
// client until QMP set_password, so the ticket never sits in argv.
type spicePart struct {
	Addr      string
	Port      int
	TLSPort   int    // 0: no TLS
	X509Dir   string // with TLSPort
	Streaming string // streaming-video: "" (qemu's default, off), off, all or filter
}

func (p spicePart) Validate() error {
	if net.ParseIP(p.Addr) == nil {
		return configErr("-spice addr", p.Addr, "want an IP address")
	}
	if p.Port < 1 || p.Port > 65535 {
		return configErr("-spice port", p.Port, "want 1..65535 (0 is resolved before argv is built)")
	}
	if p.TLSPort < 0 || p.TLSPort > 65535 {
		return configErr("-spice tls-port", p.TLSPort, "want 1..65535")
	}
	if p.TLSPort != 0 && p.TLSPort == p.Port {
		return configErr("-spice tls-port", p.TLSPort, "same as the plain port")
	}
	if (p.TLSPort != 0) != (p.X509Dir != "") {
		return configErr("-spice x509-dir", p.X509Dir, "tls-port and x509-dir go together")
	}
	if p.X509Dir != "" && !filepath.IsAbs(p.X509Dir) {
		return configErr("-spice x509-dir", p.X509Dir, "want an absolute path")
	}
	switch p.Streaming {
	case "", StreamingOff, StreamingAll, StreamingFilter:
	default:
		return configErr("-spice streaming-video", p.Streaming, "want off, all or filter")
	}
	return nil
}

func (p spicePart) Args() []string {
	v := "port=" + strconv.Itoa(p.Port) + ",addr=" + p.Addr
	if p.TLSPort != 0 {
		v += ",tls-port=" + strconv.Itoa(p.TLSPort) + ",x509-dir=" + optValue(p.X509Dir)
	}
	if p.Streaming != "" {
		v += ",streaming-video=" + p.Streaming
	}
	return []string{"-spice", v}
}

// qmpPart connects qemu's QMP monitor, as a client, to a unix socket the
// harness listens on: the greeting arrives only once qemu finished
// initialising (SPICE bound), and no dial polling is needed.
type qmpPart struct{ Socket string }

// maxUnixPath is sun_path's size minus the NUL.
const maxUnixPath = 107

func (p qmpPart) Validate() error {
	if !filepath.IsAbs(p.Socket) {
		return configErr("-qmp", p.Socket, "want an absolute path")
	}
	if len(p.Socket) > maxUnixPath {
		return configErr("-qmp", p.Socket, "unix socket path is %d bytes, more than %d (use a shorter state root)", len(p.Socket), maxUnixPath)
	}
	if strings.Contains(p.Socket, ",") {
		return configErr("-qmp", p.Socket, "a comma in the socket path")
	}
	return nil
}

func (p qmpPart) Args() []string { return []string{"-qmp", "unix:" + p.Socket} }

type serialPart struct{ Path string }

func (p serialPart) Validate() error {
	if !filepath.IsAbs(p.Path) {
		return configErr("-serial", p.Path, "want an absolute path")
	}
	return nil
}

func (p serialPart) Args() []string { return []string{"-serial", "file:" + p.Path} }

type drivePart struct {
	Path   string
	Format string // raw | qcow2
	Bus    string // ide
}

func (p drivePart) Validate() error {
	if !filepath.IsAbs(p.Path) {
		return configErr("-drive file", p.Path, "want an absolute path")
	}
	switch p.Format {
	case "raw", "qcow2":
	default:
		return configErr("-drive format", p.Format, "want raw or qcow2")
	}
	if p.Bus != "ide" {
		return configErr("-drive if", p.Bus, "want ide")
	}
	return nil
}

func (p drivePart) Args() []string {
	return []string{"-drive", "file=" + optValue(p.Path) + ",format=" + p.Format + ",if=" + p.Bus + ",snapshot=on"}
}

type extraPart []string

func (p extraPart) Validate() error {
	for _, a := range p {
		if strings.ContainsRune(a, 0) {
			return configErr("extra argument", strconv.Quote(a), "contains NUL")
		}
	}
	return nil
}

func (p extraPart) Args() []string { return p }

// launchSpec is everything Start resolved for one launch attempt.
type launchSpec struct {
	Binary   string
	Accel    Accelerator
	StateDir string
	Disk     string
	Port     int
	TLSPort  int
}

// Paths inside a state dir.
const (
	qmpSocketName = "qmp.sock"
	serialName    = "serial.log"
	logName       = "qemu.log"
	x509DirName   = "x509"
	ownerName     = "owner"
	pidName       = "qemu.pid"
)

func diskFormat(path string) string {
	if strings.HasSuffix(path, ".qcow2") {
		return "qcow2"
	}
	return "raw"
}

// parts lists the typed parts of one launch, in argv order.
func (c *config) parts(s launchSpec) []part {
	sp := spicePart{Addr: c.spiceAddr, Port: s.Port, Streaming: c.channels.streaming}
	if s.TLSPort != 0 {
		sp.TLSPort = s.TLSPort
		sp.X509Dir = filepath.Join(s.StateDir, x509DirName)
	}
	parts := []part{
		basePart{},
		machinePart{Type: c.machine, Accel: s.Accel},
		memoryPart{MiB: c.memoryMiB},
		vgaPart{Model: c.vga},
		identityPart{Name: c.name, UUID: c.uuid},
		sp,
		qmpPart{Socket: filepath.Join(s.StateDir, qmpSocketName)},
		serialPart{Path: filepath.Join(s.StateDir, serialName)},
	}
	if c.linux != nil {
		parts = append(parts,
			kernelPart{Kernel: c.linux.Kernel, Initrd: c.linux.Initrd, Append: append(slices.Clip(c.linux.Append), c.channels.guestExpect()...)},
			controlPortPart{Socket: filepath.Join(s.StateDir, controlSocketName)})
	} else {
		parts = append(parts, drivePart{Path: s.Disk, Format: diskFormat(s.Disk), Bus: "ide"})
	}
	parts = append(parts, c.channels.parts()...)
	return append(parts, extraPart(c.extra))
}

// argv validates every part and returns the full command line.
func (c *config) argv(s launchSpec) ([]string, error) {
	if s.Binary == "" {
		return nil, configErr("qemu binary", s.Binary, "empty")
	}
	argv := []string{s.Binary}
	for _, p := range c.parts(s) {
		if err := p.Validate(); err != nil {
			return nil, err
		}
		argv = append(argv, p.Args()...)
	}
	return argv, nil
}
