package harness

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/vv"
)

// Kind selects a `.vv` flavour.
type Kind string

const (
	// Proxy: through the proxy, with a freshly minted one-session token.
	Proxy Kind = "proxy"
	// Direct: the hypervisor's own endpoint and the console's ticket.
	Direct Kind = "direct"
)

// VVResponse is a fetched console.vv with its HTTP metadata.
type VVResponse struct {
	*vv.File
	Raw    []byte
	Header http.Header
}

// FetchVV GETs /console/{kind}/{source}/{uuid}/console.vv from the
// lane's API and parses it.
func (e *Env) FetchVV(ctx context.Context, kind Kind, vm *VM) (*VVResponse, error) {
	return e.FetchVVFor(ctx, kind, vm.Key.Source, vm.Key.UUID)
}

// VVURL is the API's URL of the kind `.vv` of (source, uuid).
func (e *Env) VVURL(kind Kind, source, uuid string) string {
	return vvURL(e.APIURL, kind, source, uuid)
}

func vvURL(apiURL string, kind Kind, source, uuid string) string {
	return apiURL + "/console/" + string(kind) + "/" + consolePath(source, uuid) + "/console.vv"
}

// FetchVVFor is FetchVV for any (source, uuid), known to the lane or not.
func (e *Env) FetchVVFor(ctx context.Context, kind Kind, source, uuid string) (*VVResponse, error) {
	return FetchVV(ctx, e.http, e.APIURL, e.apiKey(), kind, source, uuid)
}

// FetchVV GETs /console/{kind}/{source}/{uuid}/console.vv from the
// Kerbside-style API at apiURL (key: its bearer key, or "") and parses it.
func FetchVV(ctx context.Context, client *http.Client, apiURL, key string, kind Kind, source, uuid string) (*VVResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, vvURL(apiURL, kind, source, uuid), nil)
	if err != nil {
		return nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, vv.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{Status: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	f, err := vv.Parse(body)
	if err != nil {
		return nil, fmt.Errorf("harness: %s .vv for %s/%s: %w", kind, source, uuid, err)
	}
	return &VVResponse{File: f, Raw: body, Header: resp.Header}, nil
}

// HTTPError is a non-200 answer of the API.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("harness: API answered %d: %s", e.Status, e.Body)
}

// Endpoint converts a `.vv` to what real clients take.
func EndpointOf(f *vv.File) Endpoint {
	return Endpoint{Host: f.Host, Port: f.Port, TLSPort: f.TLSPort, Password: f.Password, CAPEM: []byte(f.CA)}
}

// Dialer returns a Go SPICE client configured from a `.vv` as spice-gtk
// would be: both ports (plain first, following NEED_SECURED), the CA and
// the host-subject.
func Dialer(f *vv.File) *spice.Dialer {
	d := &spice.Dialer{Host: f.Host, Port: f.Port, TLSPort: f.TLSPort, Password: f.Password, HostSubject: f.HostSubject}
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

// Connect fetches a `.vv` of kind for vm and links a session's main
// channel with the Go client.
func (e *Env) Connect(ctx context.Context, kind Kind, vm *VM) (*spice.Session, *VVResponse, error) {
	f, err := e.FetchVV(ctx, kind, vm)
	if err != nil {
		return nil, nil, err
	}
	s, err := Dialer(f.File).Connect(ctx)
	return s, f, err
}

// ScreenshotVV captures the guest through the endpoint of a `.vv` with
// spicy-screenshot (see Screenshot for how the password is handled).
func (e *Env) ScreenshotVV(ctx context.Context, f *vv.File) (*Image, error) {
	return Screenshot(ctx, EndpointOf(f), e.Dir)
}

// ScreenshotProxy captures vm through the proxy with spicy-screenshot,
// over TLS only (the .vv's tls-port, CA; the token is single-use).
func (e *Env) ScreenshotProxy(ctx context.Context, vm *VM) (*Image, error) {
	f, err := e.FetchVV(ctx, Proxy, vm)
	if err != nil {
		return nil, err
	}
	ep := EndpointOf(f.File)
	ep.Port = 0
	return Screenshot(ctx, ep, e.Dir)
}

// ScreenshotDirect captures vm straight from qemu with spicy-screenshot.
// Because spicy-screenshot only takes a password on its command line, it
// gets a temporary ticket that is replaced by a fresh one right after
// the capture (Env.SetTicket both times: store and sources.yaml follow).
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
func (e *Env) RemoteViewer(ctx context.Context, kind Kind, vm *VM) (*RemoteViewer, error) {
	f, err := e.FetchVV(ctx, kind, vm)
	if err != nil {
		return nil, err
	}
	title := f.Title
	if title == "" {
		title = "console.vv"
	}
	return StartRemoteViewer(ctx, f.Raw, title, e.Dir)
}

// Terminate ends a session through the API (POST
// /session/{id}/terminate).
func (e *Env) Terminate(ctx context.Context, sessionID string) error {
	return e.post(ctx, "/session/"+sessionID+"/terminate")
}

// TerminateConsole ends every session of vm's console through the API.
func (e *Env) TerminateConsole(ctx context.Context, vm *VM) error {
	return e.post(ctx, "/console/"+consolePath(vm.Key.Source, vm.Key.UUID)+"/terminate")
}

func (e *Env) post(ctx context.Context, path string) error {
	resp, err := e.apiDo(ctx, http.MethodPost, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return &HTTPError{Status: resp.StatusCode, Body: strings.TrimSpace(string(body))}
	}
	return nil
}
