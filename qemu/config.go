package qemu

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"
)

// Environment variables read by Start (see the package doc for the
// precedence rules).
const (
	EnvQemu     = "HARNESS_QEMU"      // qemu binary
	EnvAccel    = "HARNESS_ACCEL"     // auto | kvm | tcg
	EnvStateDir = "HARNESS_STATE_DIR" // root of the per-VM state dirs
	EnvKeep     = "HARNESS_KEEP"      // "1": keep state dirs after Close (until the next sweep)
)

// Defaults.
const (
	DefaultMachine   = "pc"
	DefaultMemoryMiB = 32
	DefaultVGA       = "std"
	DefaultSPICEAddr = "127.0.0.1"
	// DefaultQMPTimeout bounds a QMP call whose context has no deadline.
	DefaultQMPTimeout = 10 * time.Second
	// maxPortAttempts bounds the launches Start makes when the SPICE
	// port it picked turns out to be taken.
	maxPortAttempts = 8
)

// Accelerator selects how qemu runs guest code.
type Accelerator string

// Accelerators.
const (
	// AccelAuto picks TCG for the built-in guest (it reaches its prompt
	// in ~0.16 s under TCG against ~2.9 s under the nested KVM of the CI
	// machines) and KVM for any other disk when /dev/kvm is usable.
	AccelAuto Accelerator = "auto"
	AccelKVM  Accelerator = "kvm"
	AccelTCG  Accelerator = "tcg"
)

// ParseAccelerator parses "auto", "kvm" or "tcg" ("" means auto).
func ParseAccelerator(s string) (Accelerator, error) {
	switch a := Accelerator(strings.ToLower(strings.TrimSpace(s))); a {
	case "":
		return AccelAuto, nil
	case AccelAuto, AccelKVM, AccelTCG:
		return a, nil
	}
	return "", configErr("accelerator", s, "want auto, kvm or tcg")
}

// Option configures Start. Options fail early: an invalid value makes
// Start return a *ConfigError before anything is launched.
type Option func(*config) error

type config struct {
	binary      string
	binaryFrom  string // "option", EnvQemu or "PATH" (for messages)
	accel       Accelerator
	accelFrom   string
	machine     string
	memoryMiB   int
	vga         string
	disk        string // "" = built-in guest
	spiceAddr   string
	spicePort   int
	tlsCA       *CA
	tlsPort     int
	tlsNames    []string
	name        string
	uuid        string
	extra       []string
	channels    channelSet
	linux       *linuxBoot // LinuxGuest; nil boots disk or the built-in guest
	memorySet   bool
	env         []string
	stateRoot   string
	keep        bool
	logger      *slog.Logger
	libvirtURI  string
	host        *remoteHost // RemoteHost, HostTLS
	resolvedAcc Accelerator // accel after auto
}

func defaultConfig() *config {
	return &config{
		accel:     AccelAuto,
		accelFrom: "default",
		machine:   DefaultMachine,
		memoryMiB: DefaultMemoryMiB,
		vga:       DefaultVGA,
		spiceAddr: DefaultSPICEAddr,
		stateRoot: os.TempDir(),
		logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// newConfig applies defaults, then the environment, then opts (explicit
// options beat the environment). All problems are reported together.
func newConfig(opts ...Option) (*config, error) {
	c := defaultConfig()
	var errs []error
	if v := os.Getenv(EnvQemu); v != "" {
		c.binary, c.binaryFrom = v, EnvQemu
	}
	if v := os.Getenv(EnvAccel); v != "" {
		a, err := ParseAccelerator(v)
		if err != nil {
			errs = append(errs, configErr(EnvAccel, v, "want auto, kvm or tcg"))
		}
		c.accel, c.accelFrom = a, EnvAccel
	}
	if v := os.Getenv(EnvStateDir); v != "" {
		c.stateRoot = v
	}
	c.keep = os.Getenv(EnvKeep) == "1"
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.checkHost(); err != nil {
		errs = append(errs, err)
	}
	if c.uuid == "" {
		c.uuid = newUUID()
	}
	if c.linux != nil {
		if c.disk != "" {
			errs = append(errs, configErr("LinuxGuest", c.disk, "a Linux guest boots no disk: drop Disk"))
		}
		if c.libvirtURI != "" {
			errs = append(errs, &ConfigError{Field: "LinuxGuest", Value: c.libvirtURI, Reason: "the libvirt backend cannot boot the Linux guest yet", Err: ErrUnsupported})
		}
		if !c.memorySet {
			c.memoryMiB = LinuxGuestMemoryMiB
		}
	}
	if c.name == "" {
		c.name = "sh-" + c.uuid[:8]
	}
	return c, errors.Join(errs...)
}

// Binary sets the qemu binary (a path, or a name looked up in PATH).
// It beats HARNESS_QEMU; without either, qemu-system-x86_64 is looked up
// in PATH.
func Binary(path string) Option {
	return func(c *config) error {
		if strings.TrimSpace(path) == "" {
			return configErr("Binary", path, "empty")
		}
		c.binary, c.binaryFrom = path, "option"
		return nil
	}
}

// Accel sets the accelerator. It beats HARNESS_ACCEL; the default is
// AccelAuto.
func Accel(a Accelerator) Option {
	return func(c *config) error {
		p, err := ParseAccelerator(string(a))
		if err != nil {
			return configErr("Accel", a, "want auto, kvm or tcg")
		}
		c.accel, c.accelFrom = p, "option"
		return nil
	}
}

var machineRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Machine sets the machine type ("pc", the default, or "q35").
func Machine(typ string) Option {
	return func(c *config) error {
		if !machineRE.MatchString(typ) {
			return configErr("Machine", typ, "want a machine type such as pc or q35")
		}
		c.machine = typ
		return nil
	}
}

// Memory sets guest RAM in MiB (default 32; the built-in guest needs
// almost none).
func Memory(mib int) Option {
	return func(c *config) error {
		if mib < 8 || mib > 1<<20 {
			return configErr("Memory", mib, "want 8..1048576 MiB")
		}
		c.memoryMiB, c.memorySet = mib, true
		return nil
	}
}

// VGA sets the display device model: "std" (default), "qxl", "virtio"
// or "cirrus".
func VGA(model string) Option {
	return func(c *config) error {
		switch model {
		case "std", "qxl", "virtio", "cirrus":
			c.vga = model
			return nil
		}
		return configErr("VGA", model, "want std, qxl, virtio or cirrus")
	}
}

// Disk boots the given disk image instead of the built-in guest. The
// format is qcow2 for a ".qcow2" name and raw otherwise. The image is
// opened with snapshot=on: VMs never write it, so many can share it.
func Disk(path string) Option {
	return func(c *config) error {
		if path == "" {
			return configErr("Disk", path, "empty path")
		}
		if _, err := os.Stat(path); err != nil {
			return configErr("Disk", path, "%v", err)
		}
		c.disk = path
		return nil
	}
}

// SPICEAddr sets the address the SPICE ports listen on (default
// 127.0.0.1). It must be an IP literal.
func SPICEAddr(addr string) Option {
	return func(c *config) error {
		if net.ParseIP(addr) == nil {
			return configErr("SPICEAddr", addr, "want an IP address")
		}
		c.spiceAddr = addr
		return nil
	}
}

// SPICEPort sets the plain SPICE port; 0 (the default) lets Start pick a
// free one, retrying with another if qemu cannot bind it.
func SPICEPort(port int) Option {
	return func(c *config) error {
		if port < 0 || port > 65535 {
			return configErr("SPICEPort", port, "want 0..65535")
		}
		c.spicePort = port
		return nil
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Name sets the VM name (qemu -name, the libvirt domain name and the
// Endpoint's Name): 1–64 of [A-Za-z0-9._-]. Default: "sh-" and the first
// 8 hex digits of the UUID.
func Name(name string) Option {
	return func(c *config) error {
		if !nameRE.MatchString(name) {
			return configErr("Name", name, "want 1-64 characters of [A-Za-z0-9._-], not starting with . _ -")
		}
		c.name = name
		return nil
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// UUID sets the VM UUID (qemu -uuid and the Endpoint's UUID), in the
// canonical lower-case 8-4-4-4-12 form. Default: a random version 4 UUID.
func UUID(uuid string) Option {
	return func(c *config) error {
		if !uuidRE.MatchString(uuid) {
			return configErr("UUID", uuid, "want lower-case 8-4-4-4-12 hex")
		}
		c.uuid = uuid
		return nil
	}
}

// ExtraArgs appends raw arguments to qemu's command line (on libvirt,
// as <qemu:commandline> arguments). Never put secrets here: argv is
// visible to every user of the machine.
func ExtraArgs(args ...string) Option {
	return func(c *config) error {
		c.extra = append(c.extra, args...)
		return nil
	}
}

// Env adds KEY=value pairs to qemu's environment (direct backend), for
// example "SPICE_DEBUG_ALLOW_MC=1" to let several SPICE clients in.
func Env(kv ...string) Option {
	return func(c *config) error {
		for _, e := range kv {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				return configErr("Env", e, "want KEY=value")
			}
		}
		c.env = append(c.env, kv...)
		return nil
	}
}

// StateRoot sets the directory under which per-VM state dirs are made
// (default: HARNESS_STATE_DIR, else os.TempDir()). Keep it short: the
// QMP socket path inside must stay under 108 bytes.
func StateRoot(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return configErr("StateRoot", dir, "empty")
		}
		c.stateRoot = dir
		return nil
	}
}

// Logger sets where progress is logged (accelerator chosen, port
// retries, shutdown escalation). Default: nowhere. Tickets are never
// logged.
func Logger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return configErr("Logger", "<nil>", "nil logger")
		}
		c.logger = l
		return nil
	}
}

// resolveBinary finds the qemu binary: option, then HARNESS_QEMU, then
// PATH.
func (c *config) resolveBinary() (string, error) {
	if c.binary == "" {
		for _, name := range []string{"qemu-system-x86_64", "qemu-kvm"} {
			if p, err := exec.LookPath(name); err == nil {
				c.binaryFrom = "PATH"
				return p, nil
			}
		}
		return "", configErr("qemu binary", "qemu-system-x86_64", "not found in PATH (install qemu-system-x86, or set %s)", EnvQemu)
	}
	p, err := exec.LookPath(c.binary)
	if err != nil {
		return "", configErr("qemu binary (from "+c.binaryFrom+")", c.binary, "%v", err)
	}
	return p, nil
}

// resolveAccel turns auto into kvm or tcg and says why.
func (c *config) resolveAccel() (Accelerator, string) {
	switch c.accel {
	case AccelKVM, AccelTCG:
		return c.accel, "set by " + c.accelFrom
	}
	if c.linux != nil {
		return AccelTCG, "auto: the Linux guest's kernel hangs early under this machine kind's nested KVM"
	}
	if c.disk == "" {
		return AccelTCG, "auto: the built-in guest reaches its prompt faster under TCG than under nested KVM"
	}
	if kvmUsable() {
		return AccelKVM, "auto: /dev/kvm is usable"
	}
	return AccelTCG, "auto: /dev/kvm is not usable"
}

func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}
