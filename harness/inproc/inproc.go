// Package inproc is the in-process target: this repository's SPICE proxy
// (package proxy) with its console store and `.vv` API, run inside the
// test process. Importing it makes it the default target of package
// harness:
//
//	import _ "github.com/spiceharness/spiceharness/harness/inproc"
//
//	env := harness.Start(t)                    // the in-process proxy
//	env := harness.Start(t, harness.WithTarget(inproc.New(inproc.Firewall(proxy.FirewallWarn))))
//
// It offers every capability of harness.Target: direct `.vv`, terminate,
// session state, metrics, audit, a token clock the test moves, known
// backend and handshake deadlines, idle waits, graceful shutdown and API
// restarts, a WebSocket listener (websocket, websocket-origin: the
// browser tier); with harness.ConnectListen also tunnel `.vv` files (its
// CONNECT listener, signed hosts on a clock the test moves, a fresh qemu
// ticket per `.vv`). Package harness itself does not import it, so a proxy
// author's tests that drive their own proxy do not build this one.
package inproc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/mutant"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/daemon"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

func init() { harness.RegisterDefaultTarget(New()) }

type config struct {
	firewall  proxy.FirewallMode
	configure []func(*proxy.Proxy)
	mutations []mutant.Mutation
}

// Option configures the in-process target.
type Option func(*config)

// Firewall sets the proxy's firewall mode (default enforce).
func Firewall(m proxy.FirewallMode) Option { return func(c *config) { c.firewall = m } }

// Configure calls f on the proxy before it starts, after the lane's
// settings were applied: for fields the harness has no option for.
func Configure(f func(*proxy.Proxy)) Option {
	return func(c *config) { c.configure = append(c.configure, f) }
}

// Mutate switches guarantees of the proxy off (tests only: the
// mutations are in an internal package), to show that the scenario
// guarding each one fails without it.
func Mutate(ms ...mutant.Mutation) Option {
	return func(c *config) { c.mutations = append(c.mutations, ms...) }
}

// New returns the in-process target with opts.
func New(opts ...Option) harness.NewTarget {
	var c config
	for _, o := range opts {
		o(&c)
	}
	return func(s harness.Settings) (harness.Target, error) {
		t := &Target{cfg: c, settings: s}
		if s.ConnectAddr != "" {
			return tunnelTarget{t}, nil
		}
		return t, nil
	}
}

// Target is the in-process proxy of one lane: a proxy/daemon (the
// proxy, its store and its `.vv` API, as `harness serve` runs them) fed
// with the lane's sources directly instead of from a file.
type Target struct {
	cfg      config
	settings harness.Settings
	env      *harness.Env

	offset  atomic.Int64 // the token clock's lead over the wall clock, ns
	tOffset atomic.Int64 // the tunnel clock's (signed hosts), ns
	d       *daemon.Daemon

	mu     sync.Mutex
	loaded map[static.Key]static.Console
}

// Of returns the in-process target of env, if that is env's target.
func Of(env *harness.Env) (*Target, bool) {
	switch t := env.Target().(type) {
	case *Target:
		return t, true
	case tunnelTarget:
		return t.Target, true
	}
	return nil, false
}

// Proxy is the lane's proxy.
func (t *Target) Proxy() *proxy.Proxy { return t.d.Proxy() }

// Store is the lane's console store.
func (t *Target) Store() *store.Store { return t.d.Store() }

// Daemon is the lane's proxy, store and API together.
func (t *Target) Daemon() *daemon.Daemon { return t.d }

func (t *Target) Name() string { return "in-process" }

// InProcess marks this repository's proxy (capability in-process).
func (t *Target) InProcess() {}

func (t *Target) now() time.Time { return time.Now().Add(time.Duration(t.offset.Load())) }

func (t *Target) tunnelNow() time.Time { return time.Now().Add(time.Duration(t.tOffset.Load())) }

func (t *Target) Start(ctx context.Context, env *harness.Env) error {
	s := t.settings
	t.env = env
	cfg := daemon.Config{
		PlainAddr: s.PlainAddr, TLSAddr: s.TLSAddr, APIAddr: s.APIAddr, ConnectAddr: s.ConnectAddr, APIKey: s.APIKey, TokenTTL: s.TokenTTL,
		AllowPlain: s.AllowPlain, Firewall: t.cfg.firewall, BackendTimeout: s.BackendTimeout, HandshakeTimeout: s.HandshakeTimeout,
		MaxHandshakes: s.MaxHandshakes, MaxHandshakesPerSource: s.MaxHandshakesPerSource,
		AuditLogger: s.Logger, Now: t.now, WebSocketAddr: s.WebSocketAddr,
	}
	if cfg.WebSocketAddr == "" {
		cfg.WebSocketAddr = "127.0.0.1:0" // the browser tier's endpoint: always on
	}
	tunnels := s.ConnectAddr != ""
	if tunnels {
		// Proxmox's way: a fresh, short-lived qemu ticket per tunnel .vv.
		cfg.TunnelTicket = env.TunnelTicket
	}
	cfg.Configure = func(p *proxy.Proxy) {
		p.WebSocket.IdleTimeout = s.WebSocketIdleTimeout
		p.IdleTimeout = s.IdleTimeout
		if tunnels {
			p.Tunnel.Domain = s.TunnelDomain
			p.Tunnel.Now = t.tunnelNow
		}
		for _, f := range t.cfg.configure {
			f(p)
		}
	}
	d, err := daemon.New(cfg)
	if err != nil {
		return err
	}
	t.d = d
	if len(t.cfg.mutations) > 0 {
		mutant.Enable(d.Proxy(), t.cfg.mutations...)
		mutant.Enable(d.Store(), t.cfg.mutations...)
	}
	if err := d.Start(ctx); err != nil {
		return err
	}
	env.APIURL = d.APIURL()
	return nil
}

// Load replaces the lane's sources in the store. When only tickets
// changed, it sets them in place (no reload, no new caps probes).
func (t *Target) Load(ctx context.Context, srcs []static.Source) error {
	next := map[static.Key]static.Console{}
	for _, s := range srcs {
		for _, c := range s.Consoles {
			next[static.Key{Source: s.Name, UUID: c.UUID}] = c
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.loaded != nil && maps.EqualFunc(t.loaded, next, func(a, b static.Console) bool { a.Ticket = b.Ticket; return a == b }) {
		for k, c := range next {
			if err := t.d.Store().SetTicket(k, c.Ticket); err != nil {
				return err
			}
		}
		t.loaded = next
		return nil
	}
	if res := t.d.Load(srcs...); res.Err != nil || len(res.Problems) > 0 {
		return fmt.Errorf("inproc: loading the lane's sources: %v %v", res.Err, res.Problems)
	}
	t.loaded = next
	// Ready means steady: the caps probes of the new consoles are done,
	// so no connection of the proxy's own reaches qemu after Load.
	return t.d.Proxy().WarmCapsWait(ctx)
}

func (t *Target) ProxyVV(ctx context.Context, k static.Key) (*harness.VVResponse, error) {
	return t.client().VV(ctx, harness.Proxy, k)
}

func (t *Target) DirectVV(ctx context.Context, k static.Key) (*harness.VVResponse, error) {
	return t.client().VV(ctx, harness.Direct, k)
}

func (t *Target) client() *harness.APIClient {
	return &harness.APIClient{URL: t.d.APIURL(), Token: t.settings.APIKey, CredentialsHint: "harness.APIKey"}
}

// SessionID reads the session from the title this API writes
// ("<name> via proxy session <id>").
func (t *Target) SessionID(ctx context.Context, f *harness.VVResponse) (string, error) {
	return t.client().SessionID(ctx, f)
}

func (t *Target) TerminateSession(ctx context.Context, id string) error {
	return t.client().TerminateSession(ctx, id)
}

func (t *Target) TerminateConsole(ctx context.Context, k static.Key) error {
	return t.client().TerminateConsole(ctx, k)
}

func (t *Target) Session(_ context.Context, id string) (harness.SessionState, error) {
	info, err := t.d.Store().Session(id)
	if err != nil {
		return harness.SessionState{}, err
	}
	return harness.SessionState{State: info.State, Reason: info.Reason, Channels: len(info.Channels)}, nil
}

func (t *Target) Metric(_ context.Context, name string, labels ...string) (float64, error) {
	return t.d.Proxy().Metric(name, labels...)
}

func (t *Target) Audit(context.Context) ([]harness.AuditEvent, error) {
	evs := t.d.Store().Audit()
	out := make([]harness.AuditEvent, len(evs))
	for i, e := range evs {
		out[i] = harness.AuditEvent{Time: e.Time, Kind: string(e.Kind), Source: e.Source, UUID: e.UUID, Session: e.Session, Detail: e.Detail}
	}
	return out, nil
}

// TokenTTL is the token lifetime the lane set (the store's default when
// none).
func (t *Target) TokenTTL() time.Duration {
	if t.settings.TokenTTL > 0 {
		return t.settings.TokenTTL
	}
	return store.DefaultTokenTTL
}

// AdvanceTokenClock moves the store's clock forward by d: tokens expire
// as if d had passed.
func (t *Target) AdvanceTokenClock(d time.Duration) error {
	t.offset.Add(int64(d))
	return nil
}

func (t *Target) BackendDeadline() time.Duration {
	if t.settings.BackendTimeout > 0 {
		return t.settings.BackendTimeout
	}
	return proxy.DefaultBackendTimeout
}

func (t *Target) HandshakeDeadline() time.Duration {
	if t.settings.HandshakeTimeout > 0 {
		return t.settings.HandshakeTimeout
	}
	return proxy.DefaultHandshakeTimeout
}

// WaitIdle waits until the proxy holds no channel and no handshake, and
// its channel and connection gauges agree.
func (t *Target) WaitIdle(ctx context.Context) error {
	var last string
	for {
		st := t.d.Proxy().Stats()
		ch, _ := t.d.Proxy().Metric("spice_proxy_channels_active")
		conns, _ := t.d.Proxy().Metric("spice_proxy_connections_active")
		if st.Channels == 0 && st.Handshaking == 0 && ch == 0 && conns == 0 {
			return nil
		}
		last = fmt.Sprintf("%+v, channels_active %v, connections_active %v", st, ch, conns)
		select {
		case <-ctx.Done():
			return fmt.Errorf("inproc: the proxy still holds %s: %w", last, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (t *Target) ShutdownProxy(ctx context.Context) error { return t.d.Proxy().Shutdown(ctx) }

// RestartAPI stops the `.vv` API and starts a new one on the same
// address, store and proxy, as an operator restarting the API would.
func (t *Target) RestartAPI(ctx context.Context) error { return t.d.RestartAPI(ctx) }

func (t *Target) SPICEAddrs() (plain, tls string) {
	p := t.d.Proxy()
	if a := p.PlainAddr(); a != nil {
		plain = a.String()
	}
	if a := p.TLSAddr(); a != nil {
		tls = a.String()
	}
	return plain, tls
}

// WebSocketVV fetches the API's WebSocket endpoint of a console (GET
// /console/ws/{source}/{uuid}): a URL on the proxy's WebSocket listener
// and the token it carries as the password (capability websocket).
func (t *Target) WebSocketVV(ctx context.Context, k static.Key) (*harness.VVResponse, error) {
	f, err := t.client().WebSocket(ctx, k)
	if err != nil {
		return nil, err
	}
	f.WebSocketOrigin = t.WebSocketOrigin()
	return f, nil
}

// WebSocketOrigin is the listener's own origin, the one it accepts
// besides its configured Origins (capability websocket-origin).
func (t *Target) WebSocketOrigin() string {
	if t.d == nil || t.d.Proxy().WebSocketAddr() == nil {
		return ""
	}
	return "http://" + t.d.Proxy().WebSocketAddr().String()
}

// WebSocketOriginPolicy: the listener refuses foreign origins.
func (t *Target) WebSocketOriginPolicy() bool { return true }

// WebSocketIdleTimeout is the listener's session idle limit the lane
// set (0: none).
func (t *Target) WebSocketIdleTimeout() time.Duration { return t.settings.WebSocketIdleTimeout }

// Close stops the API and the proxy (a one-second drain).
func (t *Target) Close() error {
	if t.d == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// The lane's own teardown is not under test: it runs the real proxy.
	mutant.Disable(t.d.Proxy())
	mutant.Disable(t.d.Store())
	if err := t.d.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// TerminatesSPICE: the proxy swaps its own credential for qemu's ticket.
func (t *Target) TerminatesSPICE() {}

// tunnelTarget is the in-process target of a lane with ConnectListen:
// the proxy also serves HTTP CONNECT tunnels, its API tunnel `.vv` files
// with a fresh qemu ticket each (Env.TunnelTicket), hosts signed under
// the lane's TunnelDomain.
type tunnelTarget struct{ *Target }

// TunnelVV fetches the API's tunnel `.vv` (capability tunnel-vv).
func (t tunnelTarget) TunnelVV(ctx context.Context, k static.Key) (*harness.VVResponse, error) {
	return t.client().VV(ctx, harness.Tunnel, k)
}

// TunnelTicketTTL is the lifetime of the tickets the lane sets per
// tunnel `.vv` (capability tunnel-ticket-ttl).
func (t tunnelTarget) TunnelTicketTTL() time.Duration { return t.settings.TunnelTicketTTL }

// TunnelHostTTL is how long a signed host opens tunnels (capability
// signed-hosts).
func (t tunnelTarget) TunnelHostTTL() time.Duration {
	if t.d != nil && t.d.Proxy().Tunnel.HostTTL > 0 {
		return t.d.Proxy().Tunnel.HostTTL
	}
	return proxy.DefaultTunnelHostTTL
}

// AdvanceTunnelClock moves the clock the CONNECT listener signs and
// checks hosts with forward by d: hosts expire as if d had passed.
func (t tunnelTarget) AdvanceTunnelClock(d time.Duration) error {
	t.tOffset.Add(int64(d))
	return nil
}
