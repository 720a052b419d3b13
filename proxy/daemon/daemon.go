package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

const (
	stateNew = iota
	stateStarted
	stateClosed
)

// Daemon is the standalone static SPICE proxy: a console store fed from
// a sources file (or Load), the proxy and the `.vv` API. Make it with
// New, start it with Start, stop it with Shutdown or Close.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	store   *store.Store
	proxy   *proxy.Proxy
	metrics *metrics
	tls     tlsMaterial

	// reloadSem serialises reloads (a channel so waiting honours ctx);
	// lastKey, the fingerprint of what the last file reload read, is
	// guarded by it.
	reloadSem chan struct{}
	lastKey   string

	watchMu sync.Mutex // serialises restartWatch

	mu        sync.Mutex
	state     int
	path      string
	loaded    string // the path the last LoadFile before Start loaded
	seq       uint64
	last      ReloadResult
	hasLast   bool
	api       *api.Server
	apiAddr   string // where the API listens (host:port)
	stopWatch func()
	stop      chan struct{} // closed by Shutdown and Close
	wg        sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg and prepares a daemon; nothing listens until Start.
// Errors are *ConfigError values naming the setting to change.
func New(cfg Config) (*Daemon, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger, reloadSem: make(chan struct{}, 1), stop: make(chan struct{}), path: cfg.Sources}
	d.store = store.New(store.Options{TokenTTL: cfg.TokenTTL, Now: cfg.Now})
	d.proxy = &proxy.Proxy{Store: d.store, AllowPlain: cfg.AllowPlain, Firewall: cfg.Firewall,
		BackendTimeout: cfg.BackendTimeout, HandshakeTimeout: cfg.HandshakeTimeout, MaxHandshakes: cfg.MaxHandshakes, MaxHandshakesPerSource: cfg.MaxHandshakesPerSource,
		Logger: cfg.AuditLogger, WebSocket: proxy.WebSocketConfig{Origins: cfg.WebSocketOrigins}}
	d.metrics = newMetrics(d.store)
	return d, nil
}

// Start loads the sources file (when Config.Sources is set and LoadFile
// has not loaded it), sets up the certificate, and starts the proxy, the
// API, the file watcher and the SIGHUP handler. An invalid file fails
// Start (with the result's error: every problem) unless
// Config.AllowErrors. Nothing is left listening when Start fails. ctx
// bounds the start only.
func (d *Daemon) Start(ctx context.Context) (err error) {
	d.mu.Lock()
	switch d.state {
	case stateStarted:
		d.mu.Unlock()
		return ErrStarted
	case stateClosed:
		d.mu.Unlock()
		return ErrClosed
	}
	d.state = stateStarted
	path, loaded := d.path, d.loaded
	d.mu.Unlock()
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if path != "" && path != loaded {
		if _, err := d.reloadFile(ctx, TriggerStart, false); err != nil && !d.cfg.AllowErrors {
			return err
		}
	}
	m, err := d.loadTLS()
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.tls = m
	d.mu.Unlock()
	if m.cert != nil {
		d.proxy.Certificate, d.proxy.CACertPEM = m.cert, m.caPEM
	}
	if d.cfg.Configure != nil {
		d.cfg.Configure(d.proxy)
	}
	if err := d.proxy.Start(d.cfg.PlainAddr, d.cfg.TLSAddr); err != nil {
		s, addr := SettingPlainAddr, d.cfg.PlainAddr
		if strings.Contains(err.Error(), "TLS listener") {
			s, addr = SettingTLSAddr, d.cfg.TLSAddr
		}
		return d.cfg.errorf(s, fmt.Errorf("%w: %w", ErrConfig, err), "%s %s: %v", d.cfg.name(s), addr, listenCause(err))
	}
	if c := d.proxy.ServedCertificate(); c != nil && c.Leaf != nil {
		d.metrics.tls.expiry.Set(float64(c.Leaf.NotAfter.Unix()))
	}
	d.log.Info("proxy listening", "tls", d.proxy.TLSAddr().String(), "plain", d.proxy.PlainAddr().String(),
		"allow_plain", d.cfg.AllowPlain, "certificate", m.origin, "host_subject", d.proxy.HostSubject(), "ca_file", m.caFile)
	if d.cfg.ConnectAddr != "" {
		if err := d.proxy.StartConnect(d.cfg.ConnectAddr); err != nil {
			return d.cfg.errorf(SettingConnectAddr, fmt.Errorf("%w: %w", ErrConfig, err), "%s %s: %v", d.cfg.name(SettingConnectAddr), d.cfg.ConnectAddr, listenCause(err))
		}
		d.log.Info("CONNECT listening", "addr", d.proxy.ConnectAddr().String())
	}
	if d.cfg.WebSocketAddr != "" {
		if err := d.proxy.StartWebSocket(d.cfg.WebSocketAddr); err != nil {
			return d.cfg.errorf(SettingWebSocket, fmt.Errorf("%w: %w", ErrConfig, err), "%s %s: %v", d.cfg.name(SettingWebSocket), d.cfg.WebSocketAddr, listenCause(err))
		}
		d.log.Info("WebSocket listening", "addr", d.proxy.WebSocketAddr().String())
	}
	if err := d.startAPI(d.cfg.APIAddr); err != nil {
		return err
	}
	d.log.Info("API listening", "url", d.APIURL(), "api_key", d.cfg.APIKey != "")
	d.restartWatch()
	if d.cfg.ReloadOnSIGHUP {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer signal.Stop(hup)
			for {
				select {
				case <-d.stop:
					return
				case <-hup:
					d.reloadFile(context.Background(), TriggerSignal, false)
				}
			}
		}()
	}
	return nil
}

// listenCause is a listen error without the proxy's prefix.
func listenCause(err error) error {
	var sys *os.SyscallError
	if errors.As(err, &sys) {
		return sys.Err // "address already in use"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func (d *Daemon) startAPI(addr string) error {
	cfg := api.Config{
		Store: d.store,
		Proxy: api.ProxyEndpoint{Host: d.cfg.ProxyHost, Port: d.proxy.PlainAddr().Port, TLSPort: d.proxy.TLSAddr().Port,
			Current: func() ([]byte, string) { _, ca, subject := d.proxy.Served(); return ca, subject }},
		APIKey:       d.cfg.APIKey,
		Metrics:      d.MetricsHandler(),
		Reloader:     apiReloader{d},
		Logger:       d.cfg.AuditLogger,
		TunnelTicket: d.cfg.TunnelTicket,
	}
	if !d.cfg.AllowPlain && cfg.Proxy.Port != 0 && cfg.Proxy.TLSPort != 0 {
		// The plain listener only answers NEED_SECURED: send clients
		// straight to TLS (see api.ProxyEndpoint.SecureChannels).
		cfg.Proxy.SecureChannels = []string{"all"}
	}
	if a := d.proxy.ConnectAddr(); a != nil {
		cfg.Tunnel = api.TunnelEndpoint{Host: d.cfg.ProxyHost, Port: a.Port, Sign: d.proxy.SignTunnel, Terminate: d.proxy.TerminateTunnels}
	}
	if a := d.proxy.WebSocketAddr(); a != nil {
		cfg.WebSocket = api.WebSocketEndpoint{Host: d.cfg.ProxyHost, Port: a.Port, URL: d.proxy.WebSocketURL}
	}
	srv, err := api.New(cfg)
	if err != nil {
		return d.cfg.errorf(SettingAPIKey, fmt.Errorf("%w: %w", ErrConfig, err), "%s: %v", d.cfg.name(SettingAPIKey), err)
	}
	if err := srv.Start(addr); err != nil {
		if errors.Is(err, api.ErrInsecureListen) {
			return d.cfg.insecureAPI()
		}
		return d.cfg.errorf(SettingAPIAddr, fmt.Errorf("%w: %w", ErrConfig, err), "%s %s: %v", d.cfg.name(SettingAPIAddr), addr, listenCause(err))
	}
	u, _ := url.Parse(srv.URL())
	d.mu.Lock()
	d.api, d.apiAddr = srv, u.Host
	d.mu.Unlock()
	return nil
}

// RestartAPI stops the `.vv` API and starts a new one on the same
// address, store and proxy, as an operator restarting it would: live
// sessions do not notice and APIURL stays valid (for fault injection).
func (d *Daemon) RestartAPI(ctx context.Context) error {
	d.mu.Lock()
	srv, addr, state := d.api, d.apiAddr, d.state
	d.api = nil
	d.mu.Unlock()
	if srv == nil || state != stateStarted {
		return errors.New("daemon: RestartAPI needs a started daemon")
	}
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("daemon: stopping the API: %w", err)
	}
	if err := d.startAPI(addr); err != nil {
		return fmt.Errorf("daemon: restarting the API on %s: %w", addr, err)
	}
	d.log.Info("API restarted", "url", d.APIURL())
	return nil
}

// Shutdown stops the watcher and the API, then the proxy: live channels
// may finish until ctx ends (5 s when ctx has no deadline), then they
// are cut and ctx's error is returned. Idempotent; nil-safe.
func (d *Daemon) Shutdown(ctx context.Context) error {
	if d == nil {
		return nil
	}
	d.closeOnce.Do(func() { d.closeErr = d.shutdown(ctx, false) })
	return d.closeErr
}

// Close stops everything at once, live channels included. Idempotent;
// nil-safe; after Shutdown it does nothing.
func (d *Daemon) Close() error {
	if d == nil {
		return nil
	}
	d.closeOnce.Do(func() { d.closeErr = d.shutdown(context.Background(), true) })
	return d.closeErr
}

func (d *Daemon) shutdown(ctx context.Context, now bool) error {
	d.mu.Lock()
	d.state = stateClosed
	stopWatch, srv := d.stopWatch, d.api
	d.stopWatch, d.api = nil, nil
	d.mu.Unlock()
	close(d.stop)
	if stopWatch != nil {
		stopWatch()
	}
	d.wg.Wait()
	var errs []error
	if srv != nil {
		if now {
			errs = append(errs, srv.Close())
		} else {
			errs = append(errs, srv.Shutdown(ctx))
		}
	}
	if now {
		errs = append(errs, d.proxy.Close())
	} else {
		errs = append(errs, d.proxy.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// warm starts the caps probes of new consoles, once the proxy runs.
func (d *Daemon) warm() {
	d.mu.Lock()
	started := d.state == stateStarted && d.api != nil
	d.mu.Unlock()
	if started {
		d.proxy.WarmCaps()
	}
}

// Proxy is the daemon's proxy (its listeners are up after Start).
func (d *Daemon) Proxy() *proxy.Proxy { return d.proxy }

// Store is the daemon's console store.
func (d *Daemon) Store() *store.Store { return d.store }

// APIURL is the `.vv` API's base URL ("http://127.0.0.1:PORT"), "" before
// Start.
func (d *Daemon) APIURL() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.api == nil {
		return ""
	}
	return d.api.URL()
}

// ProxyHost is the host proxy `.vv` files send clients to.
func (d *Daemon) ProxyHost() string { return d.cfg.ProxyHost }

// SourcesFile is the sources file ("" without one).
func (d *Daemon) SourcesFile() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.path
}

// CAPEM is the CA proxy `.vv` files embed (nil: none, clients use their
// system trust store).
func (d *Daemon) CAPEM() []byte { return d.proxy.CAPEM() }

// CAFile is a file holding CAPEM (the state dir's, or Config.CAFile), ""
// when it is only in memory or there is none.
func (d *Daemon) CAFile() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tls.caFile
}

// ProxyVVURL is the API URL that mints a proxy `.vv` for console k.
func (d *Daemon) ProxyVVURL(k static.Key) string {
	return d.APIURL() + "/console/proxy/" + url.PathEscape(k.Source) + "/" + url.PathEscape(k.UUID) + "/console.vv"
}

// apiReloader is the daemon as the API's Reloader.
type apiReloader struct{ d *Daemon }

func (a apiReloader) Reload(ctx context.Context) (api.ReloadReport, error) {
	res, err := a.d.reloadFile(ctx, TriggerAPI, false)
	switch {
	case errors.Is(err, ErrNoSources):
		return api.ReloadReport{}, api.ErrNoReload
	case res.Seq == 0:
		return api.ReloadReport{}, err
	}
	return res.Report(), nil
}

func (a apiReloader) LastReload() (api.ReloadReport, bool) {
	res, ok := a.d.LastReload()
	return res.Report(), ok
}
