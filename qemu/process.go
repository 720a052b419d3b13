package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/internal/proc"
	"github.com/spiceharness/spiceharness/internal/shell"
)

// Shutdown timing.
const (
	quitTimeout = 3 * time.Second  // for the QMP quit reply
	quitGrace   = 5 * time.Second  // for qemu to exit after quit
	killGrace   = 10 * time.Second // for qemu to be reaped after SIGKILL
)

// Start boots a VM. Without the Libvirt option it runs qemu as a child
// process (a *Process); with it, a transient libvirt domain (a *Domain).
//
// Start returns when QMP answers (qemu has finished initialising, so the
// SPICE ports are bound). It does not set a ticket: until SetTicket every
// SPICE client is refused.
//
// Start always returns a non-nil VM, even with an error, so that
//
//	vm, err := qemu.Start(ctx)
//	defer vm.Close()
//
// cleans up whatever was started. A failed launch is an *ExitError with
// exit status, command line and log tails; a rejected option is a
// *ConfigError (errors.Is(err, ErrInvalidConfig)).
func Start(ctx context.Context, opts ...Option) (VM, error) {
	c, err := newConfig(opts...)
	if c.libvirtURI != "" && err == nil {
		return startDomain(ctx, c)
	}
	p := newProcess(c)
	if err != nil {
		p.abandon()
		return p, err
	}
	return p, p.start(ctx)
}

// Process is a VM run as a qemu child process. It is in its own process
// group and gets SIGKILL when the thread that started it dies (see
// start), so qemu never outlives the harness.
type Process struct {
	*core
	cfg *config

	stateDir string
	logPath  string
	argv     []string
	pid      int
	listener *net.UnixListener
	mon      *socketMonitor

	watchDone chan struct{} // closed when watch returned
	closeOnce sync.Once
	closeErr  error
	killMu    sync.Mutex
	pr        *proc.Child // the running attempt
}

var _ VM = (*Process)(nil)

func newProcess(c *config) *Process {
	p := &Process{cfg: c, watchDone: make(chan struct{})}
	p.core = newCore(p)
	p.core.ep.UUID = c.uuid
	p.core.ep.Name = c.name
	p.core.ep.Host = hostname()
	p.core.ep.HostIP = c.spiceAddr
	return p
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// abandon marks a VM that never launched as exited and closed.
func (p *Process) abandon() {
	p.core.expected.Store(true)
	p.core.exit(&ExitError{VM: p.String(), Status: "never started", Code: -1})
	close(p.watchDone)
}

// String is "qemu NAME (pid N, tcg, spice 127.0.0.1:P)".
func (p *Process) String() string {
	if p == nil {
		return "qemu <nil>"
	}
	s := "qemu " + p.cfg.name + " ("
	if p.pid != 0 {
		s += "pid " + strconv.Itoa(p.pid) + ", "
	}
	if p.accel != "" {
		s += string(p.accel) + ", "
	}
	con := p.Endpoint()
	s += "spice " + spiceAddrString(con.HostIP, con.Port)
	if con.TLSPort != 0 {
		s += " tls " + strconv.Itoa(con.TLSPort)
	}
	return s + ")"
}

// Pid is qemu's process id (0 before launch).
func (p *Process) Pid() int { return p.pid }

// Argv is qemu's command line (no secrets: tickets go through QMP).
func (p *Process) Argv() []string { return append([]string(nil), p.argv...) }

// StateDir is the VM's state directory (QMP socket, logs, x509 dir).
func (p *Process) StateDir() string { return p.stateDir }

// LogPath is the file qemu's stdout and stderr go to.
func (p *Process) LogPath() string { return p.logPath }

// Accel is the accelerator in use (auto resolved to kvm or tcg).
func (p *Process) Accel() Accelerator { return p.accel }

func (p *Process) start(ctx context.Context) (err error) {
	c := p.cfg
	launched := false
	defer func() {
		if err != nil && !launched {
			p.abandon()
		}
	}()
	bin, err := c.resolveBinary()
	if err != nil {
		return err
	}
	var why string
	p.accel, why = c.resolveAccel()
	c.logger.Info("qemu: accelerator", "vm", c.name, "accel", p.accel, "why", why)
	sweepStale(c.stateRoot)
	p.stateDir, err = makeStateDir(c.stateRoot)
	if err != nil {
		return err
	}
	if l := len(filepath.Join(p.stateDir, qmpSocketName)); l > maxUnixPath {
		return configErr("state root", c.stateRoot, "QMP socket path would be %d bytes, over the %d-byte unix limit; set %s to a short dir", l, maxUnixPath, EnvStateDir)
	}
	p.serialPath = filepath.Join(p.stateDir, serialName)
	p.logPath = filepath.Join(p.stateDir, logName)
	disk := c.disk
	if c.linux != nil {
		// boots -kernel/-initrd: no disk
	} else if disk == "" {
		if disk, err = builtinGuestImage(c.stateRoot); err != nil {
			return err
		}
	} else if disk, err = filepath.Abs(disk); err != nil {
		return err
	}
	if c.tlsCA != nil {
		if err := p.writeX509(); err != nil {
			return err
		}
	}
	if c.tlsPort != 0 && c.tlsCA == nil {
		return configErr("TLSPort", c.tlsPort, "needs the TLS option")
	}
	if len(c.tlsNames) > 0 && c.tlsCA == nil {
		return configErr("TLSNames", strings.Join(c.tlsNames, ","), "needs the TLS option")
	}
	pickPlain, pickTLS := c.spicePort == 0, c.tlsCA != nil && c.tlsPort == 0
	for attempt := 1; ; attempt++ {
		spec := launchSpec{Binary: bin, Accel: p.accel, StateDir: p.stateDir, Disk: disk, Port: c.spicePort, TLSPort: c.tlsPort}
		if pickPlain {
			if spec.Port, err = pickPort(c.spiceAddr); err != nil {
				return err
			}
		}
		if pickTLS {
			if spec.TLSPort, err = pickPort(c.spiceAddr); err != nil {
				return err
			}
		}
		if c.tlsCA == nil {
			spec.TLSPort = 0
		}
		err = p.launch(ctx, spec, attempt)
		if err == nil {
			launched = true
			return nil
		}
		if errors.Is(err, ErrBind) && (pickPlain || pickTLS) && attempt < maxPortAttempts && ctx.Err() == nil {
			c.logger.Info("qemu: SPICE port taken, retrying", "vm", c.name, "port", spec.Port, "tls_port", spec.TLSPort, "attempt", attempt)
			continue
		}
		return err
	}
}

var bindFailedRE = regexp.MustCompile(`binding socket to .* failed|Failed to open SPICE sockets`)

// launch runs qemu once and connects QMP. On failure the attempt is torn
// down completely (qemu reaped) and an *ExitError or ctx error returned.
func (p *Process) launch(ctx context.Context, spec launchSpec, attempt int) error {
	argv, err := p.cfg.argv(spec)
	if err != nil {
		return err
	}
	p.core.mu.Lock()
	p.core.ep.Port = spec.Port
	p.core.ep.TLSPort = spec.TLSPort
	p.core.mu.Unlock()
	sock := filepath.Join(p.stateDir, qmpSocketName)
	os.Remove(sock)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("qemu: QMP socket: %w", err)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.Close()
		return fmt.Errorf("qemu: log: %w", err)
	}
	fmt.Fprintf(logf, "# spice-harness: launch %d: %s\n", attempt, shell.Join(argv))

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), p.cfg.env...)
	cmd.Dir = p.stateDir
	// proc.Start forks from a goroutine locked to its own thread for
	// qemu's whole life, in qemu's own process group with SIGKILL as the
	// parent-death signal: the signal follows the forking thread, so a
	// dying harness always takes qemu with it.
	pr, err := proc.Start(cmd)
	logf.Close() // qemu has its own copy
	if err != nil {
		l.Close()
		return fmt.Errorf("qemu: start %s: %w", argv[0], err)
	}
	p.argv, p.pid = argv, cmd.Process.Pid
	os.WriteFile(filepath.Join(p.stateDir, pidName), []byte(strconv.Itoa(p.pid)+"\n"), 0o644)

	type accepted struct {
		c   *net.UnixConn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := l.AcceptUnix()
		acc <- accepted{c, err}
	}()
	// fail tears the attempt down: qemu killed and reaped, listener and
	// any accepted connection closed.
	fail := func(cause error) error {
		l.Close()
		if a := <-acc; a.c != nil {
			a.c.Close()
		}
		syscall.Kill(-p.pid, syscall.SIGKILL)
		<-pr.Exited()
		if cause != nil {
			return cause
		}
		return p.exitError(pr)
	}
	var conn *net.UnixConn
	select {
	case a := <-acc:
		acc <- a // for fail
		if a.err != nil {
			return fail(fmt.Errorf("qemu: QMP accept: %w", a.err))
		}
		conn = a.c
	case <-pr.Exited():
		return fail(nil)
	case <-ctx.Done():
		return fail(fmt.Errorf("qemu: %s: start: %w", p, ctx.Err()))
	}
	l.Close() // one connection only; the socket file goes too

	mon := newSocketMonitor(conn, p.core.publish)
	hctx, cancel := context.WithTimeout(ctx, DefaultQMPTimeout)
	defer cancel()
	cerr := make(chan error, 1)
	go func() { cerr <- mon.connect(hctx) }()
	select {
	case err := <-cerr:
		if err != nil {
			// qemu dying mid-handshake is the usual cause: prefer its
			// exit status to the I/O error.
			select {
			case <-pr.Exited():
				return fail(nil)
			case <-time.After(2 * time.Second):
			}
			return fail(fmt.Errorf("qemu: %s: %w", p, err))
		}
	case <-pr.Exited():
		<-cerr
		return fail(nil)
	}

	p.mon, p.pr = mon, pr
	p.setRunner(mon)
	go p.watch(pr)
	p.cfg.logger.Info("qemu: running", "vm", p.String(), "qemu", mon.Version.String())
	return nil
}

func spiceAddrString(ip string, port int) string {
	if port == 0 {
		return ip + " (port not yet known)"
	}
	return net.JoinHostPort(ip, strconv.Itoa(port))
}
