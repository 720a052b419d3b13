package main

// lane.go is the bench's only contact with package harness: booting a
// lane, handing out credentials and endpoints, running the real clients
// and serving the proxy helper. Everything else works on the types
// defined or aliased here.

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/harness/inproc"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/daemon"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/static"
)

type (
	picture  = harness.Image
	endpoint = harness.Endpoint
)

// mode is how a client reaches the lane's qemu.
type mode int

const (
	modeDirect    mode = iota // qemu's plain port
	modePlain                 // the proxy's plain listener (AllowPlain)
	modeTLS                   // the proxy's TLS listener
	modeDirectTLS             // qemu's own TLS port: the TLS floor
	nModes
)

func (m mode) String() string {
	return [...]string{"direct", "proxy_plain", "proxy_tls", "direct_tls"}[m]
}

func (m mode) proxied() bool { return m == modePlain || m == modeTLS }

// lane is one VM (TCG) serving SPICE on a plain and a TLS port, behind
// the in-process proxy with AllowPlain. The proxy reaches qemu on its
// plain port, as in a default lane, so the proxy figures measure the
// client leg alone; qemu's TLS port is there for the direct_tls floor.
type lane struct {
	env *harness.Env
	vm  *harness.VM
	in  *inproc.Target // the in-process proxy, its store and API
}

func upLane(ctx context.Context) (*lane, error) {
	progress("booting a VM (plain and TLS SPICE ports) behind the proxy (AllowPlain)")
	opts := []harness.Option{harness.VMs(1), harness.AllowPlain(), harness.TLSBackends()}
	if os.Getenv("BENCH_PROXY_LOG") != "" {
		opts = append(opts, harness.ProxyLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	}
	env, err := harness.Up(ctx, opts...)
	if err != nil {
		return nil, err
	}
	in, _ := inproc.Of(env)
	l := &lane{env: env, vm: env.VM(0), in: in}
	c := l.vm.Console()
	c.SecurePort = 0 // the proxy's backend leg stays plain
	src := static.Source{Name: env.Source, Type: static.TypeStatic, Consoles: []static.Console{c}}
	// Straight into the daemon: the lane's later ticket changes only set
	// tickets in place (the target keeps the store's consoles otherwise).
	if res := in.Daemon().Load(src); res.Err != nil {
		env.Close()
		return nil, res.Err
	}
	if err := in.Proxy().WarmCapsWait(ctx); err != nil {
		env.Close()
		return nil, err
	}
	return l, nil
}

func (l *lane) Close() error { return l.env.Close() }

// port is the port a client of m connects to.
func (l *lane) port(m mode) int {
	c := l.vm.Console()
	switch m {
	case modePlain:
		return l.in.Proxy().PlainAddr().Port
	case modeTLS:
		return l.in.Proxy().TLSAddr().Port
	case modeDirectTLS:
		return c.SecurePort
	}
	return c.InsecurePort
}

// qemuPid is the pid of the lane's qemu (the process whose command line
// carries its console's uuid), or 0.
func (l *lane) qemuPid() int {
	uuid := []byte(l.vm.Console().UUID)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && bytes.Contains(b, uuid) && bytes.Contains(b, []byte("qemu")) {
			return pid
		}
	}
	return 0
}

// proxy is the lane's in-process proxy (for SetTrace).
func (l *lane) proxy() *proxy.Proxy { return l.in.Proxy() }

// endpoint returns single-use credentials for m, fetched or set now
// (outside any clock): through the proxy a fresh one-session token;
// direct, a temporary qemu ticket, which release replaces.
func (l *lane) endpoint(ctx context.Context, m mode) (ep endpoint, release func() error, err error) {
	release = func() error { return nil }
	if m.proxied() {
		f, err := l.env.FetchVV(ctx, harness.Proxy, l.vm)
		if err != nil {
			return ep, nil, err
		}
		ep = harness.EndpointOf(f.File)
		if m == modePlain {
			ep.TLSPort, ep.CAPEM = 0, nil
		} else {
			ep.Port = 0
		}
		return ep, release, nil
	}
	tmp, err := l.env.SetTicket(ctx, l.vm)
	if err != nil {
		return ep, nil, err
	}
	c := l.vm.Console()
	ep = endpoint{Host: c.HypervisorIP, Port: c.InsecurePort, Password: tmp}
	if m == modeDirectTLS {
		ep = endpoint{Host: c.HypervisorIP, TLSPort: c.SecurePort, Password: tmp, CAPEM: l.env.BackendCA.CertPEM}
	}
	release = func() error {
		_, err := l.env.SetTicket(ctx, l.vm)
		return err
	}
	return ep, release, nil
}

// dialer is a Go client for m: proxied with a fresh token, direct with
// qemu's ticket in memory.
func (l *lane) dialer(ctx context.Context, m mode) (*spice.Dialer, error) {
	if !m.proxied() {
		c := l.vm.Console()
		d := &spice.Dialer{Host: c.HypervisorIP, Port: c.InsecurePort, Password: c.Ticket}
		if m == modeDirectTLS {
			d.Port, d.TLSPort, d.CA = 0, c.SecurePort, l.env.BackendCA.Pool()
		}
		return d, nil
	}
	f, err := l.env.FetchVV(ctx, harness.Proxy, l.vm)
	if err != nil {
		return nil, err
	}
	d := harness.Dialer(f.File)
	if m == modePlain {
		d.TLSPort = 0
	} else {
		d.Port = 0
	}
	return d, nil
}

// screenshot runs one spicy-screenshot capture of ep.
func (l *lane) screenshot(ctx context.Context, ep endpoint) (*picture, error) {
	return harness.Screenshot(ctx, ep, l.env.Dir)
}

// xserver is a private X server for remote-viewer.
type xserver = harness.Xvfb

func startX(ctx context.Context) (*xserver, error) { return harness.StartXvfb(ctx) }

// fetchProxyDialer fetches a proxy `.vv` (a fresh one-session token) from
// the API at apiURL and returns a Go client for its plain or TLS port.
func fetchProxyDialer(ctx context.Context, client *http.Client, apiURL, source, uuid string, secure bool) (*spice.Dialer, error) {
	api := &harness.APIClient{URL: apiURL, HTTP: client}
	r, err := api.VV(ctx, harness.Proxy, static.Key{Source: source, UUID: uuid})
	if err != nil {
		return nil, err
	}
	d := harness.Dialer(r.File)
	if secure {
		d.Port = 0
	} else {
		d.TLSPort = 0
	}
	return d, nil
}

// served is the proxy and `.vv` API of `harness serve --allow-plain`.
type served struct {
	api, hostSubject string
	port, tlsPort    int
	caPEM            []byte
	stats            func() proxy.Stats
	close            func() error
}

func serve(ctx context.Context, sources string) (*served, error) {
	// The sessions section opens 250 sessions at once from one address:
	// a capacity figure, not abuse, so the handshake caps (256 per
	// source by default, which that burst exceeds) are off here.
	d, err := daemon.New(daemon.Config{Sources: sources, AllowPlain: true, MaxHandshakes: -1, MaxHandshakesPerSource: -1})
	if err == nil {
		err = d.Start(ctx)
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	p := d.Proxy()
	return &served{api: d.APIURL(), hostSubject: p.HostSubject(), port: p.PlainAddr().Port,
		tlsPort: p.TLSAddr().Port, caPEM: p.CAPEM(), stats: p.Stats, close: d.Close}, nil
}

// browserLane is one VM behind the in-process proxy (whose WebSocket
// listener a lane always runs) and behind websockify, and a headless
// Chromium running spice-html5.
type browserLane struct {
	env *harness.Env
	vm  *harness.VM
	w   *harness.Websockify
	b   *harness.Browser
}

// upBrowserLane boots it; skip says why it cannot run on this machine.
func upBrowserLane(ctx context.Context) (l *browserLane, skip string, err error) {
	if _, err := harness.FindChromium(""); err != nil {
		return nil, err.Error(), nil
	}
	if _, err := harness.FindSpiceHTML5(""); err != nil {
		return nil, err.Error(), nil
	}
	progress("booting a VM behind the in-process proxy (its WebSocket listener) and websockify")
	l = &browserLane{}
	if l.env, err = harness.Up(ctx, harness.VMs(1)); err != nil {
		return nil, "", err
	}
	l.vm = l.env.VM(0)
	c := l.vm.Console()
	if l.w, err = harness.StartWebsockify(ctx, harness.WebsockifyOptions{
		Targets: map[string]string{"bench": c.HypervisorIP + ":" + strconv.Itoa(c.InsecurePort)}, Origin: "origin"}); err != nil {
		l.Close()
		return nil, "", err
	}
	if l.b, err = harness.StartBrowser(ctx, harness.BrowserOptions{}); err != nil {
		l.Close()
		return nil, "", err
	}
	return l, "", nil
}

// firstPaint opens a tab on the console through the proxy's WebSocket
// listener (viaProxy) or websockify and returns the page's connect to
// first painted canvas, and the wall time from opening the tab to that.
func (l *browserLane) firstPaint(ctx context.Context, viaProxy bool) (first, wall time.Duration, err error) {
	var ep harness.WebSocketEndpoint
	if viaProxy {
		f, err := l.env.FetchVV(ctx, harness.WS, l.vm)
		if err != nil {
			return 0, 0, err
		}
		ep = harness.WebSocketEndpointOf(f)
	} else {
		// websockify relays bytes: the password is qemu's ticket, fresh
		// per run (the proxy learns it too: Env.SetTicket).
		t, err := l.env.SetTicket(ctx, l.vm)
		if err != nil {
			return 0, 0, err
		}
		ep = harness.WebSocketEndpoint{URL: l.w.URL + "/websockify?token=bench", Password: t, Origin: l.w.Origin}
	}
	start := time.Now()
	p, err := l.b.Open(ctx, ep)
	if err != nil {
		return 0, 0, err
	}
	defer p.Close()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	first, err = p.WaitPainted(wctx)
	return first, time.Since(start), err
}

func (l *browserLane) Close() {
	l.b.Close()
	l.w.Close()
	l.env.Close()
}
