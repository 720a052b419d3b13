package guestagent

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// Clipboard is what the agent-port service (vdagent.Agent) offers the
// control port.
type Clipboard interface {
	SetClipboard(data []byte, mime string)
}

// WebDAVReader is what the WebDAV-port service (webdav.Client) offers
// the control port; it reports the read itself.
type WebDAVReader interface {
	Read(ctx context.Context, path string) ([]byte, error)
}

// Config wires the services of ports whose protocol lives elsewhere.
type Config struct {
	// Agent serves com.redhat.spice.0 once it appears (nil: the port is
	// only listed).
	Agent func(ctx context.Context, port io.ReadWriter, r Reporter) Clipboard
	// WebDAV serves org.spice-space.webdav.0 (nil: only listed).
	WebDAV func(ctx context.Context, port io.ReadWriter, r Reporter) WebDAVReader
	// Console is where events go (nil: stdout, which the kernel opened
	// on /dev/console, that is ttyS0).
	Console io.Writer
}

// readyDeadline bounds the wait for devices before the ready line: past
// it, ready lists what is there and the missing pieces show as absent.
const readyDeadline = 20 * time.Second

// agent is the running /init.
type agent struct {
	cfg Config
	rep *consoleReporter
	ctx context.Context

	mu        sync.Mutex
	clipboard Clipboard
	webdav    WebDAVReader
	heads     []*head
	capture   *capture
	echoes    map[string]*os.File    // open ports by name, for port-write
	claimed   map[string]bool        // devices a reader handles (claim)
	storage   map[string]*sync.Mutex // one read at a time per block device (storageLock)
}

// Run is /init: it never returns.
func Run(cfg Config) {
	if cfg.Console == nil {
		cfg.Console = os.Stdout
	}
	a := &agent{cfg: cfg, rep: &consoleReporter{w: cfg.Console}, ctx: context.Background(), echoes: map[string]*os.File{}}
	if err := a.run(); err != nil {
		errorf(a.rep, "init", err)
	}
	select {} // init must not exit: the kernel would panic
}

func (a *agent) run() error {
	if err := mountAll(); err != nil {
		return err
	}
	uev, err := listenUevents()
	if err != nil {
		errorf(a.rep, "uevent", err)
	} else {
		go a.handleUevents(uev)
	}
	boot, late, err := readModuleList()
	if err != nil {
		return err
	}
	tInit := uptime()
	loaded := a.loadModules(boot)
	tModules := uptime()
	found := a.waitDevices()
	a.openHeads()
	go a.servePorts(found.ports)
	go a.watchInputs()
	a.rep.Event(guestproto.TypeReady,
		"ports", strings.Join(portNames(found.ports), ","),
		"heads", fmt.Sprint(len(a.heads)),
		"displays", strings.Join(a.headList(), ","),
		"sound", strings.Join(soundCards(), ","),
		"usb", strings.Join(usbControllers(), ","),
		"inputs", strings.Join(inputNames(), ","),
		"modules", fmt.Sprint(loaded),
		// boot phases, guest seconds: /init started, its modules loaded
		"t_init", seconds(tInit), "t_modules", seconds(tModules),
	)
	go a.scanCCID()
	a.loadModules(late)
	go a.scanStorage()
	return nil
}

func mountAll() error {
	for _, m := range []struct{ src, dst, typ string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
	} {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.typ, 0, ""); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.typ, m.dst, err)
		}
	}
	return nil
}

// sortedGlob is filepath.Glob, sorted, ignoring errors (a bad pattern is
// a bug caught in tests).
func sortedGlob(pattern string) []string {
	ms, _ := globFn(pattern)
	sort.Strings(ms)
	return ms
}

// readTrim reads a small sysfs file, trimmed ("" on error).
func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }
