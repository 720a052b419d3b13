package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/static"
)

// Env is a running lane: VMs with fresh tickets, their static source
// (in the store and on disk as sources.yaml), the SPICE proxy and the
// `.vv` API — or, with External, VMs and a sources.yaml for a proxy the
// harness did not start.
type Env struct {
	// Dir is the lane's state directory (sources.yaml, .vv files,
	// client logs); removed by Close unless Keep.
	Dir string
	// Source is the name of the static source.
	Source string
	// VMs are the booted VMs, in order.
	VMs []*VM
	// Store and Proxy are nil when targeting an external proxy.
	Store *store.Store
	Proxy *proxy.Proxy
	// APIURL is the base URL of the `.vv` API (ours or the external one).
	APIURL string
	// SourcesYAML is the path of the sources.yaml describing the VMs.
	SourcesYAML string
	// BackendCA signed the VMs' TLS certificates (TLSBackends only).
	BackendCA *pki.CA

	cfg       *config
	log       *slog.Logger
	http      *http.Client
	stopAPI   func(context.Context) error
	stopWatch func()
	mu        sync.Mutex // serialises ticket changes and sources.yaml writes
	closeErr  error
	once      sync.Once
}

// VM is one booted VM and its console's key.
type VM struct {
	qemu.VM
	Key static.Key
	// Index is the VM's position in Env.VMs.
	Index int
}

// External reports whether the lane targets a proxy the harness did not
// start.
func (e *Env) External() bool { return e.cfg.external != "" }

// IsExternal reports whether a lane started with opts (and the HARNESS_*
// environment) would target an external proxy, without starting it.
func IsExternal(opts ...Option) (bool, error) {
	c, err := newConfig(opts)
	if err != nil {
		return false, err
	}
	return c.external != "", nil
}

// Up boots the lane (for the CLI; tests use Start). On error it has
// already cleaned up. Close tears everything down.
func Up(ctx context.Context, opts ...Option) (*Env, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	e := &Env{Source: c.source, cfg: c, log: c.logger, http: &http.Client{Timeout: 30 * time.Second}}
	if err := e.up(ctx); err != nil {
		return nil, errors.Join(err, e.Close())
	}
	return e, nil
}

func (e *Env) up(ctx context.Context) error {
	c := e.cfg
	dir, err := os.MkdirTemp("", "spice-harness-")
	if err != nil {
		return err
	}
	e.Dir = dir
	if c.tlsBackends {
		if e.BackendCA, err = pki.NewCA("spice-harness backend CA"); err != nil {
			return err
		}
	}
	if err := e.bootVMs(ctx); err != nil {
		return err
	}
	e.SourcesYAML = filepath.Join(dir, "sources.yaml")
	if c.external != "" {
		e.SourcesYAML = c.externalSources
	}
	if err := e.writeSources(); err != nil {
		return err
	}
	e.log.Info("sources.yaml written", "path", e.SourcesYAML, "source", e.Source, "consoles", len(e.VMs))
	if c.external != "" {
		e.APIURL = c.external
		return e.waitExternal(ctx)
	}
	e.Store = store.New(store.Options{TokenTTL: c.tokenTTL})
	e.Store.Load(e.source())
	e.Proxy = &proxy.Proxy{Store: e.Store, AllowPlain: c.allowPlain, Firewall: c.firewall, BackendTimeout: c.backendTO,
		HandshakeTimeout: c.handshakeTO, MaxHandshakes: c.maxHS, MaxHandshakesPerSource: c.maxHSSource, Logger: c.proxyLog}
	if err := e.Proxy.Start(c.plainAddr, c.tlsAddr); err != nil {
		return err
	}
	e.log.Info("proxy listening", "plain", e.Proxy.PlainAddr().String(), "tls", e.Proxy.TLSAddr().String(), "allow_plain", c.allowPlain)
	if err := e.startAPI(ctx); err != nil {
		return err
	}
	e.log.Info("API listening", "url", e.APIURL)
	return nil
}

// bootVMs starts the VMs in parallel, sets fresh tickets and waits for
// SPICE and the guest prompt.
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
			if c.libvirt != "" {
				opts = append(opts, qemu.Libvirt(c.libvirt))
			}
			if e.BackendCA != nil {
				opts = append(opts, qemu.TLS(e.BackendCA))
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
			if err := vm.WaitFor(ctx, qemu.ForSPICE(), qemu.ForGuestPrompt()); err != nil {
				errs[i] = err
				return
			}
			e.VMs[i].Key = static.Key{Source: e.Source, UUID: vm.Console().UUID}
			e.log.Info("guest ready", "vm", vm.String())
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// source is the static source describing the VMs (tickets included).
func (e *Env) source() static.Source {
	src := static.Source{Name: e.Source, Type: static.TypeStatic}
	if e.BackendCA != nil {
		src.CACert = string(e.BackendCA.CertPEM)
	}
	for _, vm := range e.VMs {
		src.Consoles = append(src.Consoles, vm.Console())
	}
	return src
}

// writeSources writes sources.yaml (mode 0600: it holds the tickets)
// atomically, so a proxy watching it never reads half a file.
func (e *Env) writeSources() error {
	var buf bytes.Buffer
	if err := static.Emit(&buf, []static.Source{e.source()}); err != nil {
		return err
	}
	tmp := e.SourcesYAML + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, e.SourcesYAML)
}

// VM returns the i-th VM (0-based).
func (e *Env) VM(i int) *VM { return e.VMs[i] }

// SetTicket gives vm a fresh ticket (connected clients stay), and
// updates the store and sources.yaml. With an external proxy it waits
// until that proxy serves the new ticket in its direct `.vv`.
func (e *Env) SetTicket(ctx context.Context, vm *VM) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, err := vm.SetTicket(ctx)
	if err != nil {
		return "", err
	}
	if e.Store != nil {
		if err := e.Store.SetTicket(vm.Key, t); err != nil {
			return "", err
		}
	}
	if err := e.writeSources(); err != nil {
		return "", err
	}
	if e.External() {
		if err := e.waitExternalTicket(ctx, vm, t); err != nil {
			return "", err
		}
	}
	return t, nil
}

// Close tears the lane down: API, proxy (short drain), VMs, state dir.
// Idempotent; safe on a partly started Env.
func (e *Env) Close() error {
	if e == nil {
		return nil
	}
	e.once.Do(func() {
		var errs []error
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if e.stopWatch != nil {
			e.stopWatch()
		}
		if e.stopAPI != nil {
			errs = append(errs, e.stopAPI(ctx))
		}
		if e.Proxy != nil {
			dctx, dcancel := context.WithTimeout(ctx, time.Second)
			if err := e.Proxy.Shutdown(dctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
				errs = append(errs, err)
			}
			dcancel()
		}
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
		errs = append(errs, vmErrs...)
		if e.Dir != "" && !e.cfg.keep {
			errs = append(errs, os.RemoveAll(e.Dir))
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

// Audit returns the store's audit log (nil with an external proxy).
func (e *Env) Audit() []store.Event {
	if e.Store == nil {
		return nil
	}
	return e.Store.Audit()
}

func (e *Env) String() string {
	return fmt.Sprintf("harness env %s: %d VMs, API %s", e.Dir, len(e.VMs), e.APIURL)
}
