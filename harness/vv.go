package harness

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// Kind selects a `.vv` flavour.
type Kind string

const (
	// Proxy: through the proxy, with a freshly minted one-session token.
	Proxy Kind = "proxy"
	// Direct: the hypervisor's own endpoint and the console's ticket.
	Direct Kind = "direct"
	// Tunnel: through an HTTP CONNECT proxy (proxy=), to qemu's own port
	// under a signed host, with a qemu ticket.
	Tunnel Kind = "tunnel"
	// WebSocket: through a WebSocket gateway (spice-html5's transport): a
	// URL every channel opens a WebSocket to, and the SPICE password.
	WS Kind = "ws"
)

// VVResponse is a fetched console.vv with its HTTP metadata (Header is
// nil for a `.vv` the harness wrote itself). For a WebSocket endpoint
// there is no `.vv` (Raw is nil): WebSocketURL is the gateway URL (its
// token included: a credential, never logged), File holds the password
// and a title, WebSocketOrigin the Origin a browser page of the gateway
// would send ("": none).
type VVResponse struct {
	*vv.File
	Raw             []byte
	Header          http.Header
	WebSocketURL    string
	WebSocketOrigin string
}

// FetchVV gets the kind `.vv` of vm from the target: Proxy from
// Target.ProxyVV, Direct from its DirectVVer capability, Tunnel from its
// TunnelVVer capability.
func (e *Env) FetchVV(ctx context.Context, kind Kind, vm *VM) (*VVResponse, error) {
	return e.FetchVVFor(ctx, kind, vm.Key)
}

// FetchVVFor is FetchVV for any console key, known to the lane or not.
func (e *Env) FetchVVFor(ctx context.Context, kind Kind, k static.Key) (*VVResponse, error) {
	switch kind {
	case Proxy:
		f, err := e.target.ProxyVV(ctx, k)
		if err != nil {
			return f, err
		}
		return e.net.clientVV(e.vmIndex(k), f, sideDialed)
	case Direct:
		d, ok := e.target.(DirectVVer)
		if !ok {
			return nil, &CapabilityError{Target: e.target.Name(), Cap: CapDirectVV}
		}
		f, err := d.DirectVV(ctx, k)
		if err != nil {
			return f, err
		}
		return e.net.clientVV(e.vmIndex(k), f, sideNone)
	case Tunnel:
		tv, ok := e.target.(TunnelVVer)
		if !ok {
			return nil, &CapabilityError{Target: e.target.Name(), Cap: CapTunnelVV}
		}
		f, err := tv.TunnelVV(ctx, k)
		if err != nil {
			return f, err
		}
		return e.net.clientVV(e.vmIndex(k), f, sideDialed)
	case WS:
		ws, ok := e.target.(WebSocketer)
		if !ok {
			return nil, &CapabilityError{Target: e.target.Name(), Cap: CapWebSocket}
		}
		f, err := ws.WebSocketVV(ctx, k)
		if err != nil {
			return f, err
		}
		return e.net.clientVV(e.vmIndex(k), f, sideDialed)
	}
	return nil, fmt.Errorf("harness: unknown .vv kind %q", kind)
}

// EndpointOf converts a `.vv` to what real clients take.
func EndpointOf(f *vv.File) Endpoint {
	return Endpoint{Host: f.Host, Port: f.Port, TLSPort: f.TLSPort, Password: f.Password, CAPEM: []byte(f.CA), Proxy: f.Proxy}
}

// Dialer returns a Go SPICE client configured from a `.vv` as spice-gtk
// would be: both ports (plain first, following NEED_SECURED), the CA and
// the host-subject, and every channel through the HTTP proxy of its
// proxy= key (CONNECT, then TLS end to end with the server).
func Dialer(f *vv.File) *spice.Dialer {
	d := &spice.Dialer{Host: f.Host, Port: f.Port, TLSPort: f.TLSPort, Password: f.Password, HostSubject: f.HostSubject, Proxy: f.Proxy}
	if f.CA != "" {
		d.CA = x509.NewCertPool()
		d.CA.AppendCertsFromPEM([]byte(f.CA))
	}
	for _, c := range f.SecureChannels {
		if c == "all" {
			d.SecureAll = true
		} else if t, ok := spice.ParseChannelType(c); ok {
			d.Secure = append(d.Secure, t)
		}
	}
	return d
}

// DialerFor is Dialer for a fetched endpoint: a WebSocket one
// (WebSocketURL) gives a client whose every channel is a WebSocket to
// that URL, sending WebSocketOrigin as a browser page would; others are
// Dialer(f.File).
func DialerFor(f *VVResponse) *spice.Dialer {
	d := Dialer(f.File)
	if f.WebSocketURL != "" {
		d.WebSocket, d.Origin = f.WebSocketURL, f.WebSocketOrigin
	}
	return d
}

// Connect fetches a `.vv` of kind for vm and links a session's main
// channel with the Go client.
func (e *Env) Connect(ctx context.Context, kind Kind, vm *VM) (*spice.Session, *VVResponse, error) {
	f, err := e.FetchVV(ctx, kind, vm)
	if err != nil {
		return nil, nil, err
	}
	s, err := DialerFor(f).Connect(ctx)
	return s, f, err
}

// ScreenshotVV captures the guest through the endpoint of a `.vv` with
// spicy-screenshot (see Screenshot for how the password is handled).
func (e *Env) ScreenshotVV(ctx context.Context, f *vv.File) (*Image, error) {
	return Screenshot(ctx, EndpointOf(f), e.Dir)
}

// ScreenshotProxy captures vm through the proxy with spicy-screenshot,
// over TLS when the `.vv` has a tls-port (its CA; the token is
// single-use), else over its plain port.
func (e *Env) ScreenshotProxy(ctx context.Context, vm *VM) (*Image, error) {
	f, err := e.FetchVV(ctx, Proxy, vm)
	if err != nil {
		return nil, err
	}
	ep := EndpointOf(f.File)
	if ep.TLSPort != 0 {
		ep.Port = 0
	}
	return Screenshot(ctx, ep, e.Dir)
}

// ScreenshotDirect captures vm straight from qemu with spicy-screenshot.
// Because spicy-screenshot only takes a password on its command line, it
// gets a temporary ticket that is replaced by a fresh one right after
// the capture (Env.SetTicket both times: sources.yaml and the target
// follow).
func (e *Env) ScreenshotDirect(ctx context.Context, vm *VM) (*Image, error) {
	tmp, err := e.SetTicket(ctx, vm)
	if err != nil {
		return nil, err
	}
	c := vm.Console()
	ep := Endpoint{Host: c.HypervisorIP, Port: c.InsecurePort, Password: tmp}
	if c.SecurePort != 0 && e.BackendCA != nil {
		ep = Endpoint{Host: c.HypervisorIP, TLSPort: c.SecurePort, Password: tmp, CAPEM: e.BackendCA.CertPEM}
	}
	img, shotErr := Screenshot(ctx, ep, e.Dir)
	if _, err := e.SetTicket(ctx, vm); err != nil {
		return nil, fmt.Errorf("harness: replacing the screenshot ticket: %w", err)
	}
	return img, shotErr
}

// RemoteViewer fetches a `.vv` of kind for vm and opens it with
// remote-viewer under a private Xvfb.
func (e *Env) RemoteViewer(ctx context.Context, kind Kind, vm *VM, opts ...ClientOption) (*RemoteViewer, error) {
	f, err := e.FetchVV(ctx, kind, vm)
	if err != nil {
		return nil, err
	}
	return e.RemoteViewerVV(ctx, f, opts...)
}

// RemoteViewerVV opens a fetched `.vv` with remote-viewer under a
// private Xvfb. The window is found by the `.vv`'s title (remote-viewer
// names it "<title> (1)"), or by "console.vv" when it has none. opts add
// spice-gtk options (ShareCD, SoftSmartcard).
func (e *Env) RemoteViewerVV(ctx context.Context, f *VVResponse, opts ...ClientOption) (*RemoteViewer, error) {
	title := f.Title
	if title == "" {
		title = "console.vv"
	}
	return StartRemoteViewer(ctx, f.Raw, title, e.Dir, opts...)
}
