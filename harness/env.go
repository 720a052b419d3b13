package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
	"github.com/spiceharness/spiceharness/static"
)

// Env is a running lane: VMs with fresh tickets, their static source (on
// disk as sources.yaml) and the proxy under test (the Target) serving it.
type Env struct {
	// Dir is the lane's state directory (sources.yaml, .vv files,
	// client logs); removed by Close unless Keep.
	Dir string
	// Source is the name of the static source.
	Source string
	// VMs are the booted VMs, in order.
	VMs []*VM
	// APIURL is the base URL of the target's `.vv` API ("" for a target
	// without one). Targets set it in Start.
	APIURL string
	// SourcesYAML is the path of the sources.yaml describing the VMs.
	SourcesYAML string
	// BackendCA signed the VMs' TLS certificates (TLSBackends only). On
	// a hypervisor host it is that host's CA (certificate only).
	BackendCA *qemu.CA
	// Host is the hypervisor host the VMs run on (WithHosts); nil when
	// they run on this machine or on a libvirtd Libvirt named.
	Host *Host

	cfg    *config
	log    *slog.Logger
	target Target
	net    *Net // network conditions (Network, Env.Net)

	lease     *lease        // the host's slots (WithHosts)
	hostLost  chan struct{} // closed when the host went away
	hostErr   error         // why, written before hostLost is closed
	hostWatch sync.WaitGroup

	mu       sync.Mutex // serialises ticket changes and sources.yaml writes
	browser  *Browser   // the lane's Chromium, started by the first OpenPage
	tunnel   tunnelTickets
	arms     sync.WaitGroup // tunnel ticket re-arms
	closeErr error
	once     sync.Once
	closed   chan struct{}
}

// Channels lists the SPICE channels the lane asked its VMs for (the
// Channels and AllChannels options), beyond main, display:0, inputs and
// cursor.
func (e *Env) Channels() []qemu.Channel { return append([]qemu.Channel(nil), e.cfg.channels...) }

// VM is one booted VM and its console's key.
type VM struct {
	qemu.VM
	Key static.Key
	// Index is the VM's position in Env.VMs.
	Index int
	// Guest commands the Linux guest's agent and waits for its events
	// (nil unless the lane has the LinuxGuest option).
	Guest *qemu.Guest
}

// Close closes the agent connection, then the VM.
func (v *VM) Close() error {
	if v == nil {
		return nil
	}
	v.Guest.Close()
	return v.VM.Close()
}

// GuestEvent waits for the first event since boot of type typ ("": any
// type) that match accepts (nil: any) from the VM's Linux guest agent (see
// qemu/guestproto for the types and keys). It fails at once when the
// lane has no LinuxGuest option.
func (v *VM) GuestEvent(ctx context.Context, typ string, match func(guestproto.Event) bool) (guestproto.Event, error) {
	if v.Guest == nil {
		return guestproto.Event{}, fmt.Errorf("harness: %s: no Linux guest (ask for one with harness.LinuxGuest())", v.VM)
	}
	return v.Guest.WaitEvent(ctx, typ, match)
}

// Up boots the lane (for the CLI and programs; tests use Start): the
// VMs, their sources.yaml, then the target. On error it has already
// cleaned up. Close tears everything down.
func Up(ctx context.Context, opts ...Option) (*Env, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	t, err := c.newTarget()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	e := &Env{Source: c.source, cfg: c, log: c.logger, target: t, closed: make(chan struct{}), hostLost: make(chan struct{}), net: newNet(c.network)}
	if e.Source == "" {
		e.Source = DefaultSource
		if n, ok := t.(SourceNamer); ok {
			e.Source = n.SourceName()
		}
	}
	if err := e.up(ctx); err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) && context.Cause(ctx) != nil {
			err = fmt.Errorf("%w (bound: %s=%v or harness.Timeout)", err, EnvTimeout, c.timeout)
		}
		return nil, errors.Join(err, e.Close())
	}
	return e, nil
}

// SourceNamer is a target that wants its own source name for the lane
// (a sources.yaml shared by lanes needs one name per lane).
type SourceNamer interface {
	SourceName() string
}

// UniqueSourceName returns "harness-" and 8 random hex digits.
func UniqueSourceName() string {
	var b [4]byte
	rand.Read(b[:])
	return DefaultSource + "-" + hex.EncodeToString(b[:])
}

func (e *Env) up(ctx context.Context) error {
	c := e.cfg
	dir, err := os.MkdirTemp("", "spice-harness-")
	if err != nil {
		return err
	}
	e.Dir = dir
	if c.onHosts() {
		if err := e.place(ctx); err != nil {
			return err
		}
	} else if c.tlsBackends {
		if e.BackendCA, err = qemu.NewCA("spice-harness backend CA"); err != nil {
			return err
		}
	}
	if err := e.bootVMs(ctx); err != nil {
		if e.Host != nil && errors.Is(err, qemu.ErrHostLost) {
			c.hosts.markDown(e.Host, err)
			return &HostLostError{Host: e.Host, Err: err}
		}
		return err
	}
	if e.Host != nil {
		e.hostWatch.Add(1)
		go func() { defer e.hostWatch.Done(); e.watchHost() }()
	}
	for _, vm := range e.VMs {
		// The backend leg's shaping listeners, before the target reads
		// where its consoles are.
		if _, err := e.net.backendConsole(vm.Index, vm.Console()); err != nil {
			return err
		}
	}
	e.SourcesYAML = filepath.Join(dir, "sources.yaml")
	if p, ok := e.target.(SourcesPather); ok && p.SourcesPath() != "" {
		e.SourcesYAML = p.SourcesPath()
	}
	if err := e.writeSources(); err != nil {
		return err
	}
	e.log.Info("sources.yaml written", "path", e.SourcesYAML, "source", e.Source, "consoles", len(e.VMs))
	e.log.Info("starting the proxy under test", "target", e.target.Name())
	if err := e.target.Start(ctx, e); err != nil {
		return fmt.Errorf("harness: starting the proxy under test (%s): %w", e.target.Name(), err)
	}
	if err := e.target.Load(ctx, e.Sources()); err != nil {
		return fmt.Errorf("harness: the proxy under test (%s) did not load the lane's consoles: %w", e.target.Name(), err)
	}
	e.log.Info("proxy under test ready", "target", e.target.Name(), "api", e.APIURL)
	return nil
}

// SourcesPather is a target that loads its consoles from a sources.yaml
// at a path of its own (the lane writes it there).
type SourcesPather interface {
	SourcesPath() string
}

// bootVMs starts the VMs in parallel, sets fresh tickets and waits for
// SPICE and the guest prompt (or the Linux guest agent's ready line).
func (e *Env) bootVMs(ctx context.Context) error {
	c := e.cfg
	e.VMs = make([]*VM, c.vms)
	errs := make([]error, c.vms)
	var wg sync.WaitGroup
	for i := range e.VMs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := []qemu.Option{qemu.Logger(e.log)}
			if c.accel != "" {
				opts = append(opts, qemu.Accel(c.accel))
			}
			switch {
			case e.Host != nil:
				opts = append(opts, e.hostOptions()...)
			case c.libvirt != "":
				opts = append(opts, qemu.Libvirt(c.libvirt))
			}
			if e.BackendCA != nil && e.Host == nil {
				opts = append(opts, qemu.TLS(e.BackendCA))
				if c.settings.TunnelDomain != "" {
					opts = append(opts, qemu.TLSNames("*."+c.settings.TunnelDomain))
				}
			}
			opts = append(opts, c.qemuOpts...)
			e.log.Info("booting VM", "vm", i+1)
			vm, err := qemu.Start(ctx, opts...)
			e.VMs[i] = &VM{VM: vm, Index: i}
			if err != nil {
				errs[i] = err
				return
			}
			e.log.Info("QMP ready", "vm", vm.String())
			if _, err := vm.SetTicket(ctx); err != nil {
				errs[i] = err
				return
			}
			e.log.Info("ticket set", "vm", vm.String())
			guestReady := qemu.ForGuestPrompt()
			if c.linuxGuest {
				guestReady = qemu.ForAgentReady()
			}
			if err := vm.WaitFor(ctx, qemu.ForSPICE(), guestReady); err != nil {
				errs[i] = err
				return
			}
			if c.linuxGuest {
				if e.VMs[i].Guest, err = qemu.DialGuest(ctx, vm); err != nil {
					errs[i] = err
					return
				}
			}
			e.VMs[i].Key = static.Key{Source: e.Source, UUID: vm.Endpoint().UUID}
			e.log.Info("guest ready", "vm", vm.String())
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Sources is the lane's static source, tickets included, as the target
// must serve it.
func (e *Env) Sources() []static.Source {
	src := static.Source{Name: e.Source, Type: static.TypeStatic}
	if e.BackendCA != nil {
		src.CACert = string(e.BackendCA.CertPEM)
	}
	for _, vm := range e.VMs {
		c, err := e.net.backendConsole(vm.Index, vm.Console())
		if err != nil {
			// Only once the lane is closing: up made the listeners.
			e.log.Warn("the backend leg's shaping listener is gone", "vm", vm.Index+1, "err", err)
		}
		src.Consoles = append(src.Consoles, c)
	}
	return []static.Source{src}
}

// writeSources writes sources.yaml (mode 0600: it holds the tickets)
// atomically, so a proxy watching it never reads half a file. A target
// sharing the file with other lanes merges it instead (SourcesWriter).
func (e *Env) writeSources() error {
	if b, ok := e.target.(interface{ beforeSources() }); ok {
		b.beforeSources() // a proxy watching the file may log its reload before Load runs
	}
	if w, ok := e.target.(SourcesWriter); ok {
		return w.WriteSources(e.Sources())
	}
	var buf bytes.Buffer
	if err := static.Emit(&buf, e.Sources()); err != nil {
		return err
	}
	return writeFileAtomic(e.SourcesYAML, buf.Bytes())
}

// SourcesWriter is a target that writes the lane's sources into its
// sources.yaml itself (merging them with other lanes').
type SourcesWriter interface {
	WriteSources(srcs []static.Source) error
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// VM returns the i-th VM (0-based).
func (e *Env) VM(i int) *VM { return e.VMs[i] }

// Target is the proxy under test.
func (e *Env) Target() Target { return e.target }

// SetTicket gives vm a fresh ticket (connected clients stay), writes
// sources.yaml and has the target load it: it returns once the target
// uses the new ticket.
func (e *Env) SetTicket(ctx context.Context, vm *VM) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, err := vm.SetTicket(ctx)
	if err != nil {
		return "", err
	}
	e.bumpTicketGen(vm)
	if err := e.writeSources(); err != nil {
		return "", err
	}
	if err := e.target.Load(ctx, e.Sources()); err != nil {
		return "", fmt.Errorf("harness: the proxy under test did not take the new ticket of %s: %w", vm.Key, err)
	}
	return t, nil
}

// Context returns a context derived from parent that is also cancelled
// when the lane closes, the target dies (a Watcher target) or the
// lane's hypervisor host goes away (WithHosts): its Cause then says why
// ("proxy under test exited (status 2)" and the log tail, or a
// *HostLostError naming the host). Scenarios run under it, so a dead
// proxy or host fails the running scenario at once instead of at its
// deadline.
func (e *Env) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	var died <-chan struct{}
	w, _ := e.target.(Watcher)
	if w != nil {
		died = w.Died()
	}
	stop := make(chan struct{})
	go func() {
		select {
		case <-died:
			cancel(w.Err())
		case <-e.hostLost:
			cancel(e.hostErr)
		case <-e.closed:
			cancel(errors.New("harness: the lane was closed"))
		case <-ctx.Done():
		case <-stop:
		}
	}()
	var once sync.Once
	return ctx, func() { once.Do(func() { close(stop); cancel(context.Canceled) }) }
}

// Watcher is a target that can die on its own (a process, a remote
// service): Died is closed when it did, and Err says how.
type Watcher interface {
	Died() <-chan struct{}
	Err() error
}

// TargetErr is the reason the target died, or nil while it lives (or for
// a target that cannot die on its own).
func (e *Env) TargetErr() error {
	w, ok := e.target.(Watcher)
	if !ok {
		return nil
	}
	select {
	case <-w.Died():
		return w.Err()
	default:
		return nil
	}
}

// Close tears the lane down: the target, then the VMs, then the state
// dir. Idempotent; safe on a partly started Env.
func (e *Env) Close() error {
	if e == nil {
		return nil
	}
	e.once.Do(func() {
		if e.closed != nil {
			close(e.closed)
		}
		e.arms.Wait()
		var errs []error
		e.mu.Lock()
		b := e.browser
		e.mu.Unlock()
		if err := b.Close(); err != nil {
			errs = append(errs, fmt.Errorf("harness: closing the browser: %w", err))
		}
		if e.target != nil {
			if err := e.target.Close(); err != nil {
				errs = append(errs, fmt.Errorf("harness: closing the proxy under test: %w", err))
			}
		}
		e.net.close()
		var wg sync.WaitGroup
		vmErrs := make([]error, len(e.VMs))
		for i, vm := range e.VMs {
			if vm == nil || vm.VM == nil {
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); vmErrs[i] = vm.Close() }()
		}
		wg.Wait()
		e.hostWatch.Wait()
		if e.HostErr() != nil {
			// The VMs' exits say the host went away; HostErr said it
			// once already.
			for i, err := range vmErrs {
				if errors.Is(err, qemu.ErrHostLost) {
					vmErrs[i] = nil
				}
			}
		}
		errs = append(errs, vmErrs...)
		e.lease.release()
		if e.Dir != "" && !e.cfg.keep {
			errs = append(errs, os.RemoveAll(e.Dir))
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

func (e *Env) String() string {
	return fmt.Sprintf("harness lane %s: %d VMs, proxy under test %s", e.Dir, len(e.VMs), e.target.Name())
}

// wait polls cond every interval until it reports done, fails, or ctx
// ends; on ctx's end it returns ctx's error joined with the last error
// cond reported (so a timeout says what was still wrong).
func wait(ctx context.Context, interval time.Duration, what string, cond func() (bool, error)) error {
	var last error
	for {
		done, err := cond()
		if done {
			return nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return perm.err
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%s: %w (last: %w)", what, context.Cause(ctx), last)
			}
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		case <-time.After(interval):
		}
	}
}

// permanentError ends a wait at once.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }

func permanent(err error) error { return &permanentError{err} }
