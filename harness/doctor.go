package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/qemu"
)

// A Check is one thing the harness needs from the machine, with what to
// do when it is missing: `harness doctor` runs every registered check,
// and `harness run` prints the advice of the failing ones when a lane
// cannot start.
type Check struct {
	// Name is short: "qemu", "kvm", "spicy-screenshot".
	Name string
	// For says what needs it ("every lane", "real-client scenarios").
	For string
	// Run checks; it returns what it found (for the report) or an error
	// saying what is wrong.
	Run func(ctx context.Context) (found string, err error)
	// Fix says exactly what to run or start ("apt-get install
	// qemu-system-x86 (or: make deps)", "make services").
	Fix string
	// Optional: the harness works without it, only slower or with fewer
	// scenarios (KVM: lanes use TCG).
	Optional bool
}

// CheckResult is a Check's outcome.
type CheckResult struct {
	Check
	Found string
	Err   error
}

// OK reports whether the check passed.
func (r CheckResult) OK() bool { return r.Err == nil }

var (
	checksMu sync.Mutex
	checks   []Check
)

// RegisterCheck adds c to what `harness doctor` checks. Later needs (a
// browser, websockify, the Linux guest) register one line each, usually
// with ProgramCheck:
//
//	harness.RegisterCheck(harness.ProgramCheck("chromium", "chromium", "browser scenarios"))
func RegisterCheck(c Check) {
	checksMu.Lock()
	defer checksMu.Unlock()
	checks = append(checks, c)
}

// Checks lists the registered checks in registration order.
func Checks() []Check {
	checksMu.Lock()
	defer checksMu.Unlock()
	return append([]Check(nil), checks...)
}

// ProgramCheck checks that prog is installed (in PATH, or in /usr/sbin
// and /sbin, where Debian puts daemons), from the Debian package pkg.
func ProgramCheck(prog, pkg, forWhat string) Check {
	return Check{Name: prog, For: forWhat, Fix: installFix(pkg), Run: func(context.Context) (string, error) {
		p, err := findProgram(prog)
		if err != nil {
			return "", fmt.Errorf("%s is not installed", prog)
		}
		return p, nil
	}}
}

func installFix(pkgs ...string) string {
	return "apt-get install " + strings.Join(pkgs, " ") + " (or: make deps)"
}

func findProgram(prog string) (string, error) {
	if p, err := exec.LookPath(prog); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + prog
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func init() {
	RegisterCheck(Check{Name: "qemu", For: "every lane", Fix: installFix("qemu-system-x86"), Run: checkQemu})
	RegisterCheck(Check{Name: "kvm", For: "fast lanes (without it qemu uses TCG)", Optional: true,
		Fix: "as root: modprobe kvm_intel (or kvm_amd) and chmod 0666 /dev/kvm (make services does the chmod); or run with --accel tcg", Run: checkKVM})
	RegisterCheck(ProgramCheck("spicy-screenshot", "spice-client-gtk", "real-client scenarios (pixels, banner, NEED_SECURED, …)"))
	RegisterCheck(ProgramCheck("remote-viewer", "virt-viewer", "remote-viewer scenarios"))
	RegisterCheck(ProgramCheck("Xvfb", "xvfb", "remote-viewer scenarios (a virtual X server)"))
	RegisterCheck(ProgramCheck("xdotool", "xdotool", "remote-viewer scenarios"))
	RegisterCheck(ProgramCheck("import", "imagemagick", "remote-viewer scenarios (screen captures)"))
	RegisterCheck(ProgramCheck("spicy", "spice-client-gtk", "channels tier: webdav-read (spicy connects the WebDAV channel)"))
	RegisterCheck(ProgramCheck("genisoimage", "genisoimage", "channels tier: usbredir-cd (the shared ISO)"))
	RegisterCheck(ProgramCheck("certutil", "libnss3-tools", "channels tier: smartcard-atr (the software card's NSS db)"))
	RegisterCheck(ProgramCheck("xclip", "xclip", "channels tier: agent-clipboard-x11 (the client's X clipboard)"))
	RegisterCheck(Check{Name: "libvirtd", For: "libvirt lanes (--libvirt, the libvirt-* scenarios)", Run: checkLibvirtd,
		Fix: "make services (starts libvirtd with a TCP listener on 127.0.0.1; needs root); if libvirtd is missing: " +
			installFix("libvirt-daemon", "libvirt-daemon-driver-qemu", "libvirt-clients")})
	RegisterCheck(ProgramCheck("squid", "squid", "CONNECT proxy lanes (--squid, TestScenariosSquid)"))
}

// checkQemu finds the qemu binary the lanes would run and asks it for
// its SPICE options: a qemu built without SPICE cannot serve a lane.
func checkQemu(ctx context.Context) (string, error) {
	bin, err := qemu.FindBinary()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// qemu lists its SPICE options and exits 1 (help is not a run);
	// one built without SPICE says it has no such option group.
	out, err := exec.CommandContext(ctx, bin, "-spice", "help").CombinedOutput()
	if !strings.Contains(string(out), "spice options") {
		return bin, fmt.Errorf("%s has no SPICE support (-spice help: %v: %s)", bin, err, strings.TrimSpace(firstLineOf(string(out))))
	}
	return bin + ", SPICE built in", nil
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// checkKVM opens /dev/kvm for reading and writing, as qemu does.
func checkKVM(context.Context) (string, error) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", errors.New("/dev/kvm does not exist (no KVM on this machine or the module is not loaded)")
		}
		return "", fmt.Errorf("/dev/kvm cannot be opened: %w", err)
	}
	f.Close()
	return "/dev/kvm usable", nil
}

// checkLibvirtd connects to libvirtd's unix socket and its loopback TCP
// listener (what `make services` starts and the libvirt lanes use).
func checkLibvirtd(ctx context.Context) (string, error) {
	if _, err := findProgram("libvirtd"); err != nil {
		return "", errors.New("libvirtd is not installed")
	}
	var found, bad []string
	for _, a := range [][2]string{{"unix", "/var/run/libvirt/libvirt-sock"}, {"tcp", "127.0.0.1:16509"}} {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, a[0], a[1])
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s %s: %v", a[0], a[1], err))
			continue
		}
		c.Close()
		found = append(found, a[0]+" "+a[1])
	}
	if len(bad) > 0 {
		return strings.Join(found, ", "), fmt.Errorf("libvirtd does not answer: %s", strings.Join(bad, "; "))
	}
	return "answers on " + strings.Join(found, " and "), nil
}

// Doctor runs every registered check, in order.
func Doctor(ctx context.Context) []CheckResult {
	var out []CheckResult
	for _, c := range Checks() {
		found, err := c.Run(ctx)
		out = append(out, CheckResult{Check: c, Found: found, Err: err})
	}
	return out
}
