package qemu

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/digitalocean/go-libvirt"

	"github.com/spiceharness/spiceharness/fixtures/guest"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// Domain is a VM run as a transient libvirt domain (Start with the
// Libvirt option). It behaves like Process, with these differences:
//
//   - The domain is created with VIR_DOMAIN_START_AUTODESTROY: libvirtd
//     destroys it when this process's libvirt connection goes away, which
//     is the libvirt backend's "no orphans" guarantee.
//   - SPICE uses <graphics type='spice' autoport='yes'> on the SPICE
//     address; the port is read back from the live domain XML. libvirt
//     turns ticketing off when the graphics element has no passwd, so the
//     domain gets a random throwaway passwd, already expired
//     (passwdValidTo in 1970) and never revealed: every client is refused
//     until SetTicket, exactly as on the direct backend.
//   - The built-in guest is copied into the VM's state dir (1 MiB), since
//     libvirt relabels the disk it is given; any other disk is attached
//     with <transient/> (libvirt keeps an overlay next to it).
//   - The serial log is a file in the VM's state dir on this host, opened
//     by libvirtd: the host running libvirtd must see the same /tmp (true
//     for a local libvirtd, whichever transport). The same holds for the
//     disk image. With RemoteHost neither is needed (see there).
//   - ExtraArgs and Env become <qemu:commandline> arguments and variables.
//     SPICE TLS is libvirtd's own (spice_tls in its qemu.conf): HostTLS
//     uses it; TLS, TLSPort and TLSNames are refused (ErrUnsupported).
//   - Kill is virDomainDestroy (SIGTERM, then SIGKILL after libvirt's
//     grace period). Close is QMP quit, then virDomainDestroy if the
//     domain is still there after 5 s.
type Domain struct {
	*core
	cfg *config
	uri *url.URL

	l        *libvirt.Libvirt
	dom      libvirt.Domain
	stateDir string
	logPath  string // libvirt's domain log, when readable here

	// On a remote host (RemoteHost): the pool, the VM's overlay volume
	// and private image (when it had to upload its own), and the console
	// stream feeding the serial log.
	pool        libvirt.StoragePool
	overlay     *libvirt.StorageVol
	private     *libvirt.StorageVol
	consoleIn   *consoleInput
	consoleDone chan struct{}

	stopped   chan struct{} // closed by watch when the domain is gone
	watchDone chan struct{}
	// evCancel ends the event subscriptions' contexts. Called only after
	// the connection is closed: cancelling first makes go-libvirt send a
	// deregister RPC, and a deregister still running in a libvirtd worker
	// when the client socket closes races libvirtd 9.0's own cleanup of
	// the client's callbacks (remoteClientFreePrivateCallbacks), which
	// segfaults libvirtd now and then. Closed first, the deregister fails
	// here, and libvirtd frees every callback in one place.
	evCancel  context.CancelFunc
	closeOnce sync.Once
	closeErr  error
	killMu    sync.Mutex
	watching  bool // watch was started
}

var _ VM = (*Domain)(nil)

func startDomain(ctx context.Context, c *config) (VM, error) {
	u, _ := parseLibvirtURI(c.libvirtURI) // validated by the option
	d := &Domain{cfg: c, uri: u, stopped: make(chan struct{}), watchDone: make(chan struct{})}
	d.core = newCore(d)
	d.core.ep.UUID = c.uuid
	d.core.ep.Name = c.name
	d.core.ep.HostIP = c.spiceAddr
	err := d.start(ctx)
	if err != nil && d.dom.Name == "" {
		if d.l != nil && d.l.IsConnected() {
			d.deleteVolumes() // best effort: the sweep removes what is left
		}
		d.abandon()
		d.stopConsole()
	}
	return d, err
}

// abandon ends a VM whose domain was never created: the exit is
// recorded at once (as after a failed direct launch) and Close only
// removes the state dir.
func (d *Domain) abandon() {
	d.core.expected.Store(true)
	if d.watching {
		d.hangUp() // ends the event stream, so watch records the exit
		<-d.watchDone
		return
	}
	d.hangUp()
	d.core.exit(&ExitError{VM: d.String(), Status: "never started", Code: -1})
	close(d.watchDone)
}

// String is "libvirt NAME (qemu+tcp://…/system, tcg, spice 127.0.0.1:P)",
// with " on HOST" after the name on a remote host.
func (d *Domain) String() string {
	if d == nil {
		return "libvirt <nil>"
	}
	s := "libvirt " + d.cfg.name
	if h := d.HostName(); h != "" {
		s += " on " + h
	}
	s += " (" + d.uri.Redacted()
	if d.accel != "" {
		s += ", " + string(d.accel)
	}
	con := d.Endpoint()
	return s + ", spice " + spiceAddrString(con.HostIP, con.Port) + ")"
}

// StateDir is the VM's local state directory (serial log, disk copy).
func (d *Domain) StateDir() string { return d.stateDir }

// Accel is the accelerator in use (domain type kvm, or qemu for tcg).
func (d *Domain) Accel() Accelerator { return d.accel }

// DomainName is the libvirt domain name (the VM name).
func (d *Domain) DomainName() string { return d.dom.Name }

// HostName is the name RemoteHost gave the VM's host ("" for a local
// libvirtd).
func (d *Domain) HostName() string {
	if d.cfg.host == nil {
		return ""
	}
	return d.cfg.host.name
}

// URI is the libvirt URI of the VM's libvirtd (without a password).
func (d *Domain) URI() string { return d.uri.Redacted() }

func (d *Domain) start(ctx context.Context) error {
	c := d.cfg
	if c.tlsCA != nil || c.tlsPort != 0 || len(c.tlsNames) > 0 {
		return &ConfigError{Field: "TLS", Value: "with Libvirt", Reason: "SPICE TLS on libvirt is the host's own (libvirtd's spice_tls settings): use HostTLS", Err: ErrUnsupported}
	}
	var why string
	d.accel, why = c.resolveAccel()
	if c.isRemote() && c.accel == AccelAuto && c.disk != "" {
		d.accel, why = AccelTCG, "auto on a remote host: set the accelerator explicitly (kvm) for disks that need it"
	}
	c.logger.Info("qemu: accelerator", "vm", c.name, "accel", d.accel, "why", why)
	var domXML string
	var err error
	if !c.isRemote() {
		if domXML, err = d.prepare(); err != nil {
			return err
		}
	} else if err = d.prepareLocal(); err != nil {
		return err
	}
	if d.l, err = dialLibvirt(ctx, d.uri); err != nil {
		return d.hostErr(err)
	}
	if c.isRemote() {
		disk, err := d.stageDisk(ctx)
		if err != nil {
			return d.hostErr(err)
		}
		if domXML, err = c.domainXML(d.accel, disk, false, "", ""); err != nil {
			return err
		}
	}
	// Lifecycle events first, so a domain that dies at once is seen.
	evCtx, evCancel := context.WithCancel(context.Background())
	d.evCancel = evCancel
	life, err := call(ctx, func() (<-chan libvirt.DomainEventLifecycleMsg, error) { return d.l.LifecycleEvents(evCtx) })
	if err != nil {
		return fmt.Errorf("qemu: libvirt %s: lifecycle events: %w", d.uri.Redacted(), err)
	}
	d.watching = true
	go d.watch(life)
	host := d.HostName()
	if host == "" {
		host = d.uri.Hostname()
		if h, err := call(ctx, d.l.ConnectGetHostname); err == nil && h != "" {
			host = h
		} else if host == "" {
			host = hostname()
		}
	}
	d.core.mu.Lock()
	d.core.ep.Host = host
	d.core.mu.Unlock()
	if err := d.create(ctx, domXML); err != nil {
		return d.hostErr(err)
	}
	d.setRunner(&libvirtMonitor{d: d})
	if c.isRemote() {
		// Created paused: run it once its serial output has somewhere
		// to go (see attachConsole).
		if err := d.attachConsole(ctx); err != nil {
			return d.hostErr(err)
		}
		if _, err := call(ctx, func() (struct{}, error) { return struct{}{}, d.l.DomainResume(d.dom) }); err != nil {
			return d.hostErr(fmt.Errorf("qemu: %s: resume: %w", d, err))
		}
	}
	live, err := call(ctx, func() (string, error) { return d.l.DomainGetXMLDesc(d.dom, 0) })
	if err != nil {
		return d.hostErr(fmt.Errorf("qemu: %s: domain XML: %w", d, err))
	}
	port, tlsPort, err := spicePortsFromXML(live)
	if err != nil {
		return fmt.Errorf("qemu: %s: %w", d, err)
	}
	d.core.mu.Lock()
	d.core.ep.Port = port
	if c.host != nil && c.host.tls {
		d.core.ep.TLSPort, d.core.ep.HostSubject = tlsPort, c.host.subject
	}
	d.core.mu.Unlock()
	if c.host != nil && c.host.tls && tlsPort == 0 {
		return &ConfigError{Field: "HostTLS", Value: c.host.subject, Reason: fmt.Sprintf(
			"the domain on %s came up without a SPICE TLS port: that host's libvirtd needs spice_tls = 1 (and spice_tls_x509_cert_dir) in qemu.conf",
			d.hostLabel())}
	}
	if err := d.forwardQMPEvents(ctx, evCtx); err != nil {
		return d.hostErr(err)
	}
	c.logger.Info("qemu: running", "vm", d.String())
	return nil
}

// prepareLocal makes the state dir and the (empty) serial log of a VM
// on a remote host: nothing else of it is on this machine.
func (d *Domain) prepareLocal() error {
	c := d.cfg
	sweepStale(c.stateRoot)
	var err error
	if d.stateDir, err = makeStateDir(c.stateRoot); err != nil {
		return err
	}
	d.serialPath = filepath.Join(d.stateDir, serialName)
	if err := os.WriteFile(d.serialPath, nil, 0o644); err != nil {
		return fmt.Errorf("qemu: serial log: %w", err)
	}
	return nil
}

// hostLabel names the VM's host for messages: "host NAME (URI)" or the
// URI.
func (d *Domain) hostLabel() string {
	if h := d.HostName(); h != "" {
		return "host " + h + " (" + d.uri.Redacted() + ")"
	}
	return d.uri.Redacted()
}

// hostErr marks err as a lost host (ErrHostLost) when the connection to
// libvirtd is gone, so callers can tell a dead host from a bad VM.
func (d *Domain) hostErr(err error) error {
	if err == nil || errors.Is(err, ErrHostLost) || d.l == nil || d.l.IsConnected() {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrHostLost, d.hostLabel(), err)
}

// prepare makes the state dir with the serial log and the disk, and
// renders the domain XML.
func (d *Domain) prepare() (string, error) {
	c := d.cfg
	sweepStale(c.stateRoot)
	var err error
	if d.stateDir, err = makeStateDir(c.stateRoot); err != nil {
		return "", err
	}
	d.serialPath = filepath.Join(d.stateDir, serialName)
	// Created here so it stays ours and readable; libvirtd appends to it.
	if err := os.WriteFile(d.serialPath, nil, 0o644); err != nil {
		return "", fmt.Errorf("qemu: serial log: %w", err)
	}
	disk, transient := c.disk, true
	if disk == "" {
		// A copy of its own: libvirt relabels the disk it is given.
		disk, transient = filepath.Join(d.stateDir, "disk.img"), false
		if err := guest.WriteImage(disk); err != nil {
			return "", err
		}
	} else if disk, err = filepath.Abs(disk); err != nil {
		return "", err
	}
	emulator := ""
	if c.binary != "" {
		if emulator, err = c.resolveBinary(); err != nil {
			return "", err
		}
	}
	return c.domainXML(d.accel, disk, transient, d.serialPath, emulator)
}

// create creates the transient domain with autodestroy. A domain
// libvirt cannot start is an *ExitError, as a failed direct launch.
func (d *Domain) create(ctx context.Context, domXML string) error {
	var err error
	flags := libvirt.DomainStartAutodestroy
	if d.cfg.isRemote() {
		flags |= libvirt.DomainStartPaused
	}
	d.dom, err = call(ctx, func() (libvirt.Domain, error) {
		return d.l.DomainCreateXML(domXML, flags)
	})
	if !d.cfg.isRemote() { // a remote host's log is not readable here
		d.logPath = "/var/log/libvirt/qemu/" + d.cfg.name + ".log"
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("qemu: libvirt %s: create domain %s: %w", d.uri.Redacted(), d.cfg.name, err)
	}
	// libvirt's message carries qemu's stderr, its domain log the
	// command line.
	return &ExitError{
		VM:     d.String(),
		Status: "libvirt could not start the domain: " + err.Error(),
		Code:   -1,
		Log:    tail.File(d.logPath, 20),
		Serial: tail.File(d.serialPath, 10),
	}
}
