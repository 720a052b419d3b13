package qemu

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"
	"github.com/digitalocean/go-libvirt/socket/dialers"
	"github.com/digitalocean/go-qemu/qmp/raw"

	"github.com/spiceharness/spiceharness/fixtures/guest"
	"github.com/spiceharness/spiceharness/internal/tail"
)

// Why not qmp.NewLibvirtRPCMonitor: it goes through libvirt.Run, which
// turns a QMP error into errors.New(desc) (class dropped), and it wants a
// pre-dialed net.Conn through the deprecated libvirt.New. libvirtMonitor
// below sends QMP with go-libvirt's QEMUDomainMonitorCommand (the same
// RPC) and parses the reply itself, so *QMPError keeps the class; qmp/raw
// runs on top of it like on the direct backend.

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
//     disk image.
//   - ExtraArgs and Env become <qemu:commandline> arguments and variables.
//     SPICE TLS needs libvirtd's own spice_tls settings and is refused
//     (ErrUnsupported).
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

	stopped   chan struct{} // closed by watch when the domain is gone
	watchDone chan struct{}
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
		d.abandon()
	}
	return d, err
}

// abandon ends a VM whose domain was never created: the exit is
// recorded at once (as after a failed direct launch) and Close only
// removes the state dir.
func (d *Domain) abandon() {
	d.core.expected.Store(true)
	if d.watching {
		d.evCancel()
		d.l.Disconnect() // ends the event stream, so watch records the exit
		<-d.watchDone
		return
	}
	if d.l != nil {
		d.l.Disconnect()
	}
	d.core.exit(&ExitError{VM: d.String(), Status: "never started", Code: -1})
	close(d.watchDone)
}

// String is "libvirt NAME (qemu+tcp://…/system, tcg, spice 127.0.0.1:P)".
func (d *Domain) String() string {
	if d == nil {
		return "libvirt <nil>"
	}
	s := "libvirt " + d.cfg.name + " (" + d.uri.Redacted()
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

// call runs fn (a blocking go-libvirt call) but returns when ctx ends;
// fn then finishes on its own (every go-libvirt call ends when the
// connection closes, which Close guarantees).
func call[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	rc := make(chan result, 1)
	go func() {
		v, err := fn()
		rc <- result{v, err}
	}()
	select {
	case r := <-rc:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, context.Cause(ctx)
	}
}

func (d *Domain) start(ctx context.Context) error {
	c := d.cfg
	if c.tlsCA != nil || c.tlsPort != 0 {
		return &ConfigError{Field: "TLS", Value: "with Libvirt", Reason: "SPICE TLS on libvirt needs libvirtd's own spice_tls settings", Err: ErrUnsupported}
	}
	var why string
	d.accel, why = c.resolveAccel()
	c.logger.Info("qemu: accelerator", "vm", c.name, "accel", d.accel, "why", why)
	sweepStale(c.stateRoot)
	var err error
	if d.stateDir, err = makeStateDir(c.stateRoot); err != nil {
		return err
	}
	d.serialPath = filepath.Join(d.stateDir, serialName)
	// Created here so it stays ours and readable; libvirtd appends to it.
	if err := os.WriteFile(d.serialPath, nil, 0o644); err != nil {
		return fmt.Errorf("qemu: serial log: %w", err)
	}
	disk, transient := c.disk, true
	if disk == "" {
		disk, transient = filepath.Join(d.stateDir, "disk.img"), false
		if err := guest.WriteImage(disk); err != nil {
			return err
		}
	} else if disk, err = filepath.Abs(disk); err != nil {
		return err
	}
	emulator := ""
	if c.binary != "" {
		if emulator, err = c.resolveBinary(); err != nil {
			return err
		}
	}
	domXML, err := c.domainXML(d.accel, disk, transient, d.serialPath, emulator)
	if err != nil {
		return err
	}

	if d.l, err = dialLibvirt(ctx, d.uri); err != nil {
		return err
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
	if host, err := call(ctx, d.l.ConnectGetHostname); err == nil && host != "" {
		d.core.ep.Host = host
	} else {
		d.core.ep.Host = d.uri.Hostname()
		if d.core.ep.Host == "" {
			d.core.ep.Host = hostname()
		}
	}
	d.dom, err = call(ctx, func() (libvirt.Domain, error) {
		return d.l.DomainCreateXML(domXML, libvirt.DomainStartAutodestroy)
	})
	d.logPath = "/var/log/libvirt/qemu/" + c.name + ".log"
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("qemu: libvirt %s: create domain %s: %w", d.uri.Redacted(), c.name, err)
		}
		// Like a failed direct launch: libvirt's message carries qemu's
		// stderr, its domain log the command line.
		return &ExitError{
			VM:     d.String(),
			Status: "libvirt could not start the domain: " + err.Error(),
			Code:   -1,
			Log:    tail.File(d.logPath, 20),
			Serial: tail.File(d.serialPath, 10),
		}
	}
	d.setRunner(&libvirtMonitor{d: d})

	live, err := call(ctx, func() (string, error) { return d.l.DomainGetXMLDesc(d.dom, 0) })
	if err != nil {
		return fmt.Errorf("qemu: %s: domain XML: %w", d, err)
	}
	port, err := spicePortFromXML(live)
	if err != nil {
		return fmt.Errorf("qemu: %s: %w", d, err)
	}
	d.core.mu.Lock()
	d.core.ep.Port = port
	d.core.mu.Unlock()

	qev, err := call(ctx, func() (<-chan libvirt.DomainEvent, error) { return d.l.SubscribeQEMUEvents(evCtx, c.name) })
	if err != nil {
		return fmt.Errorf("qemu: %s: QMP events: %w", d, err)
	}
	go func() {
		for e := range qev { // drained always: go-libvirt blocks on this channel
			var data map[string]any
			json.Unmarshal(e.Details, &data)
			d.core.publish(Event{Name: e.Event, Data: data, Time: time.Unix(int64(e.Seconds), int64(e.Microseconds)*1000)})
		}
	}()
	c.logger.Info("qemu: running", "vm", d.String())
	return nil
}

// dialLibvirt connects to libvirtd at u within ctx.
func dialLibvirt(ctx context.Context, u *url.URL) (*libvirt.Libvirt, error) {
	timeout := 15 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	var dialer socket.Dialer
	switch u.Scheme {
	case "qemu+tcp":
		opts := []dialers.RemoteOption{dialers.WithRemoteTimeout(timeout)}
		if p := u.Port(); p != "" {
			opts = append(opts, dialers.UsePort(p))
		}
		dialer = dialers.NewRemote(u.Hostname(), opts...)
	default:
		opts := []dialers.LocalOption{dialers.WithLocalTimeout(timeout)}
		if s := u.Query().Get("socket"); s != "" {
			opts = append(opts, dialers.WithSocket(s))
		}
		dialer = dialers.NewLocal(opts...)
	}
	l := libvirt.NewWithDialer(dialer)
	done := make(chan error, 1)
	go func() { done <- l.ConnectToURI(libvirt.RemoteURI(u)) }()
	select {
	case err := <-done:
		if err != nil {
			return nil, fmt.Errorf("qemu: libvirt %s: %w", u.Redacted(), err)
		}
		return l, nil
	case <-ctx.Done():
		go func() { // do not leak a connection made after we gave up
			if <-done == nil {
				l.Disconnect()
			}
		}()
		return nil, fmt.Errorf("qemu: libvirt %s: %w", u.Redacted(), ctx.Err())
	}
}

// watch waits for the domain to stop (or the connection to drop), then
// records the exit.
func (d *Domain) watch(life <-chan libvirt.DomainEventLifecycleMsg) {
	defer close(d.watchDone)
	status := ""
	for status == "" {
		select {
		case e, ok := <-life:
			if !ok {
				status = "libvirt event stream ended"
				break
			}
			if e.Dom.Name != d.cfg.name {
				continue
			}
			switch libvirt.DomainEventType(e.Event) {
			case libvirt.DomainEventStopped:
				status = "domain stopped: " + stoppedReason(e.Detail)
			case libvirt.DomainEventCrashed:
				status = "domain crashed"
			}
		case <-d.l.Disconnected():
			status = "connection to libvirtd lost (the domain is autodestroyed)"
		}
	}
	close(d.stopped)
	d.evCancel()
	e := &ExitError{VM: d.String(), Status: status, Code: -1}
	e.Log = tail.File(d.logPath, 20)
	e.Serial = tail.File(d.serialPath, 10)
	d.core.exit(e)
	if !e.Expected {
		d.cfg.logger.Error("qemu: domain ended unexpectedly", "vm", d.String(), "status", status)
	}
	go func() { // keep go-libvirt's sender unblocked until it closes
		for range life {
		}
	}()
}

func stoppedReason(detail int32) string {
	switch libvirt.DomainEventStoppedDetailType(detail) {
	case libvirt.DomainEventStoppedShutdown:
		return "shutdown"
	case libvirt.DomainEventStoppedDestroyed:
		return "destroyed"
	case libvirt.DomainEventStoppedCrashed:
		return "crashed"
	case libvirt.DomainEventStoppedFailed:
		return "failed"
	}
	return "detail " + strconv.Itoa(int(detail))
}

// Kill destroys the domain (virDomainDestroy) and waits until libvirt
// reports it stopped. The exit counts as expected.
func (d *Domain) Kill() error {
	if d == nil || d.dom.Name == "" {
		return nil
	}
	d.killMu.Lock()
	defer d.killMu.Unlock()
	select {
	case <-d.stopped:
		return nil
	default:
	}
	d.core.expected.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), killGrace+15*time.Second)
	defer cancel()
	_, err := call(ctx, func() (struct{}, error) { return struct{}{}, d.l.DomainDestroyFlags(d.dom, 0) })
	if err != nil {
		select {
		case <-d.stopped: // it was stopping anyway
			return nil
		case <-time.After(2 * time.Second):
		}
		return fmt.Errorf("qemu: %s: destroy: %w", d, err)
	}
	select {
	case <-d.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("qemu: %s: no stop event after destroy", d)
	}
}

// Close quits qemu over QMP, destroys the domain if it is still there
// after 5 s, closes the libvirt connection and removes the state dir.
// See VM.Close.
func (d *Domain) Close() error {
	if d == nil {
		return nil
	}
	d.closeOnce.Do(func() { d.closeErr = d.shutdown() })
	return d.closeErr
}

func (d *Domain) shutdown() error {
	var crashed error
	select {
	case <-d.core.exited:
		if e := d.core.exitErr.(*ExitError); !e.Expected && d.dom.Name != "" {
			crashed = e
		}
	default:
	}
	d.core.expected.Store(true)
	var errs []error
	if d.dom.Name != "" {
		select {
		case <-d.stopped:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), quitTimeout)
			d.core.do(ctx, func(m *raw.Monitor) error { return m.Quit() })
			cancel()
			select {
			case <-d.stopped:
			case <-time.After(quitGrace):
				d.cfg.logger.Info("qemu: no stop after quit, destroying", "vm", d.String())
			}
			if err := d.Kill(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if d.l != nil {
		if d.evCancel != nil {
			d.evCancel()
		}
		d.l.Disconnect()
	}
	<-d.watchDone
	d.core.closed.Store(true)
	if d.stateDir != "" && !d.cfg.keep && len(errs) == 0 {
		if err := os.RemoveAll(d.stateDir); err != nil {
			errs = append(errs, fmt.Errorf("qemu: remove state dir: %w", err))
		}
	}
	if crashed != nil {
		return crashed
	}
	return errors.Join(errs...)
}

// libvirtMonitor runs QMP through libvirt's qemu-monitor-command.
type libvirtMonitor struct{ d *Domain }

func (m *libvirtMonitor) run(ctx context.Context, cmd []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(cmd, &obj); err != nil {
		return nil, fmt.Errorf("qemu: QMP command is not a JSON object: %w", err)
	}
	name := commandName(obj)
	reply, err := call(ctx, func() (string, error) {
		return m.d.l.QEMUDomainMonitorCommand(m.d.dom, string(cmd), 0)
	})
	if err != nil {
		select {
		case <-m.d.stopped:
			return nil, fmt.Errorf("qemu: QMP %s: %w: %v", name, errMonitorClosed, err)
		default:
		}
		var lerr libvirt.Error
		if errors.As(err, &lerr) && (lerr.Code == uint32(libvirt.ErrOperationInvalid) || lerr.Code == uint32(libvirt.ErrNoDomain)) {
			// "domain is not running": the stop event is on its way.
			return nil, fmt.Errorf("qemu: QMP %s: %w: %v", name, errMonitorClosed, err)
		}
		return nil, fmt.Errorf("qemu: QMP %s via libvirt: %w", name, err)
	}
	return checkReply(name, []byte(reply))
}

func (m *libvirtMonitor) close() error { return nil }

// Domain XML.

type domainXML struct {
	XMLName    xml.Name    `xml:"domain"`
	Type       string      `xml:"type,attr"`
	QemuNS     string      `xml:"xmlns:qemu,attr,omitempty"`
	Name       string      `xml:"name"`
	UUID       string      `xml:"uuid"`
	Memory     xmlValue    `xml:"memory"`
	VCPU       int         `xml:"vcpu"`
	OS         xmlOS       `xml:"os"`
	OnPoweroff string      `xml:"on_poweroff"`
	OnReboot   string      `xml:"on_reboot"`
	OnCrash    string      `xml:"on_crash"`
	Devices    xmlDevices  `xml:"devices"`
	Cmdline    *xmlCmdline `xml:"qemu:commandline,omitempty"`
}

type xmlValue struct {
	Unit  string `xml:"unit,attr"`
	Value int    `xml:",chardata"`
}

type xmlOS struct {
	Type struct {
		Arch    string `xml:"arch,attr"`
		Machine string `xml:"machine,attr"`
		Value   string `xml:",chardata"`
	} `xml:"type"`
	Boot struct {
		Dev string `xml:"dev,attr"`
	} `xml:"boot"`
}

type xmlDevices struct {
	Emulator string      `xml:"emulator,omitempty"`
	Disk     xmlDisk     `xml:"disk"`
	Serial   xmlSerial   `xml:"serial"`
	Graphics xmlGraphics `xml:"graphics"`
	Video    struct {
		Model struct {
			Type string `xml:"type,attr"`
		} `xml:"model"`
	} `xml:"video"`
	Controller struct {
		Type  string `xml:"type,attr"`
		Model string `xml:"model,attr"`
	} `xml:"controller"`
	Memballoon struct {
		Model string `xml:"model,attr"`
	} `xml:"memballoon"`
}

type xmlDisk struct {
	Type   string `xml:"type,attr"`
	Device string `xml:"device,attr"`
	Driver struct {
		Name string `xml:"name,attr"`
		Type string `xml:"type,attr"`
	} `xml:"driver"`
	Source struct {
		File string `xml:"file,attr"`
	} `xml:"source"`
	Target struct {
		Dev string `xml:"dev,attr"`
		Bus string `xml:"bus,attr"`
	} `xml:"target"`
	Transient *struct{} `xml:"transient,omitempty"`
}

type xmlSerial struct {
	Type   string `xml:"type,attr"`
	Source struct {
		Path string `xml:"path,attr"`
	} `xml:"source"`
	Target struct {
		Port int `xml:"port,attr"`
	} `xml:"target"`
}

type xmlGraphics struct {
	Type          string `xml:"type,attr"`
	Port          int    `xml:"port,attr,omitempty"`
	AutoPort      string `xml:"autoport,attr,omitempty"`
	Listen        string `xml:"listen,attr,omitempty"`
	Passwd        string `xml:"passwd,attr,omitempty"`
	PasswdValidTo string `xml:"passwdValidTo,attr,omitempty"`
	Listens       []struct {
		Type    string `xml:"type,attr"`
		Address string `xml:"address,attr"`
	} `xml:"listen"`
}

type xmlCmdline struct {
	Args []struct {
		Value string `xml:"value,attr"`
	} `xml:"qemu:arg"`
	Env []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	} `xml:"qemu:env"`
}

// domainXML renders the transient domain. The passwd is a throwaway that
// is already expired: it only keeps libvirt from disabling ticketing.
func (c *config) domainXML(accel Accelerator, disk string, transient bool, serial, emulator string) (string, error) {
	var x domainXML
	x.Type = "qemu"
	if accel == AccelKVM {
		x.Type = "kvm"
	}
	x.Name, x.UUID = c.name, c.uuid
	x.Memory = xmlValue{Unit: "MiB", Value: c.memoryMiB}
	x.VCPU = 1
	x.OS.Type.Arch, x.OS.Type.Machine, x.OS.Type.Value = "x86_64", c.machine, "hvm"
	x.OS.Boot.Dev = "hd"
	x.OnPoweroff, x.OnReboot, x.OnCrash = "destroy", "destroy", "destroy"
	dv := &x.Devices
	dv.Emulator = emulator
	dv.Disk.Type, dv.Disk.Device = "file", "disk"
	dv.Disk.Driver.Name, dv.Disk.Driver.Type = "qemu", diskFormat(disk)
	dv.Disk.Source.File = disk
	dv.Disk.Target.Dev, dv.Disk.Target.Bus = "hda", "ide"
	if c.machine == "q35" || strings.HasPrefix(c.machine, "pc-q35") {
		dv.Disk.Target.Dev, dv.Disk.Target.Bus = "sda", "sata"
	}
	if transient {
		dv.Disk.Transient = &struct{}{}
	}
	dv.Serial.Type = "file"
	dv.Serial.Source.Path = serial
	dv.Graphics.Type = "spice"
	if c.spicePort != 0 {
		dv.Graphics.Port, dv.Graphics.AutoPort = c.spicePort, "no"
	} else {
		dv.Graphics.AutoPort = "yes"
	}
	dv.Graphics.Listen = c.spiceAddr
	dv.Graphics.Listens = []struct {
		Type    string `xml:"type,attr"`
		Address string `xml:"address,attr"`
	}{{"address", c.spiceAddr}}
	dv.Graphics.Passwd = newTicket()
	dv.Graphics.PasswdValidTo = "1970-01-01T00:00:01"
	dv.Video.Model.Type = map[string]string{"std": "vga", "qxl": "qxl", "virtio": "virtio", "cirrus": "cirrus"}[c.vga]
	dv.Controller.Type, dv.Controller.Model = "usb", "none"
	dv.Memballoon.Model = "none"
	if len(c.extra) > 0 || len(c.env) > 0 {
		x.QemuNS = "http://libvirt.org/schemas/domain/qemu/1.0"
		x.Cmdline = &xmlCmdline{}
		for _, a := range c.extra {
			x.Cmdline.Args = append(x.Cmdline.Args, struct {
				Value string `xml:"value,attr"`
			}{a})
		}
		for _, e := range c.env {
			k, v, _ := strings.Cut(e, "=")
			x.Cmdline.Env = append(x.Cmdline.Env, struct {
				Name  string `xml:"name,attr"`
				Value string `xml:"value,attr"`
			}{k, v})
		}
	}
	b, err := xml.MarshalIndent(x, "", "  ")
	if err != nil {
		return "", fmt.Errorf("qemu: domain XML: %w", err)
	}
	return string(b), nil
}

// spicePortFromXML reads the SPICE port of a running domain.
func spicePortFromXML(s string) (int, error) {
	var x struct {
		Graphics []struct {
			Type string `xml:"type,attr"`
			Port int    `xml:"port,attr"`
		} `xml:"devices>graphics"`
	}
	if err := xml.Unmarshal([]byte(s), &x); err != nil {
		return 0, fmt.Errorf("domain XML: %w", err)
	}
	for _, g := range x.Graphics {
		if g.Type == "spice" && g.Port > 0 {
			return g.Port, nil
		}
	}
	return 0, errors.New("domain XML: no SPICE graphics with a port")
}
