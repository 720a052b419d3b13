package api_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/proxy/tunnel"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// tunnelEnv is the API with a tunnel endpoint, in front of a real
// CONNECT listener and two synthetic consoles: "tls" with a plain port
// that answers NEED_SECURED and a TLS port (certificate from the
// source's CA), "plain" with a plain port only.
type tunnelEnv struct {
	t      *testing.T
	store  *store.Store
	proxy  *proxy.Proxy
	client *http.Client
	url    string
	ca     *pki.CA
	logs   syncbuf.Buffer
	tlsCon static.Console
}

const tunnelTicket = "tunnel-ticket-Zq9"

func newTunnelEnv(t *testing.T, ticket api.TunnelTicketFunc, configured bool) *tunnelEnv {
	t.Helper()
	e := &tunnelEnv{t: t, client: &http.Client{Timeout: 10 * time.Second}}
	var err error
	if e.ca, err = pki.NewCA("tunnel test CA"); err != nil {
		t.Fatal(err)
	}
	leaf, err := e.ca.Issue(pkix.Name{Organization: []string{"Test"}, CommonName: "hypervisor"}, "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	start := func(s *spicetest.Server) *spicetest.Server {
		s.Password, s.Keys = tunnelTicket, backendKeys
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	needSecured := start(&spicetest.Server{NeedSecured: true})
	secure := start(&spicetest.Server{TLS: &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}})
	plain := start(&spicetest.Server{})
	e.tlsCon = static.Console{UUID: "tls", Name: "vm-tls", Hypervisor: "localhost", HypervisorIP: "127.0.0.1",
		InsecurePort: needSecured.Port(), SecurePort: secure.Port(), Ticket: tunnelTicket, HostSubject: pki.HostSubject(leaf.Cert)}
	e.store = store.New(store.Options{})
	e.store.Load(static.Source{Name: "lab", Type: static.TypeStatic, CACert: string(e.ca.CertPEM), Consoles: []static.Console{
		e.tlsCon,
		{UUID: "plain", Name: "vm-plain", Hypervisor: "localhost", HypervisorIP: "127.0.0.1", InsecurePort: plain.Port(), Ticket: tunnelTicket},
	}})
	e.proxy = &proxy.Proxy{Store: e.store, KeyPoolSize: 1}
	if err := e.proxy.StartConnect("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.proxy.Close() })
	cfg := api.Config{Store: e.store, TunnelTicket: ticket, Logger: slog.New(slog.NewTextHandler(&e.logs, nil))}
	if configured {
		cfg.Tunnel = api.TunnelEndpoint{Port: e.proxy.ConnectAddr().Port, Sign: e.proxy.SignTunnel, Terminate: e.proxy.TerminateTunnels}
	}
	srv, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.client.CloseIdleConnections(); srv.Close() })
	e.url = srv.URL()
	return e
}

func tunnelPath(uuid string) string { return "/console/tunnel/lab/" + uuid + "/console.vv" }

func (e *tunnelEnv) get(path string) (*http.Response, []byte) {
	e.t.Helper()
	resp, err := e.client.Get(e.url + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&b)
	return resp, []byte(b.String())
}

func (e *tunnelEnv) fetch(uuid string) *vv.File {
	e.t.Helper()
	resp, body := e.get(tunnelPath(uuid))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != api.ContentTypeVV {
		e.t.Fatalf("GET %s: %d %s %s", tunnelPath(uuid), resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	f, err := vv.Parse(body)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// linkThrough links a main channel the way spice-gtk does with proxy=:
// CONNECT host:port to the proxy, then (on the TLS port) TLS checked
// against the .vv's ca and host-subject, then the SPICE link with its
// password, end to end with the console.
func linkThrough(t *testing.T, f *vv.File, port int, secure bool) error {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(f.Proxy, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:%d HTTP/1.0\r\nHost: %s:%d\r\nProxy-Connection: keep-alive\r\nUser-Agent: GLib/2.74\r\n\r\n", f.Host, port, f.Host, port)
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CONNECT: %s", resp.Status)
	}
	if r.Buffered() > 0 {
		t.Fatalf("%d bytes after the 200 before the link", r.Buffered())
	}
	var conn net.Conn = c
	if secure {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(f.CA)) {
			t.Fatalf("the .vv's ca is not PEM")
		}
		tc := tls.Client(c, spice.TLSConfig(pool, f.Host, f.HostSubject))
		if err := tc.Handshake(); err != nil {
			return err
		}
		conn = tc
	}
	m := &spice.LinkMess{ChannelType: spice.ChannelMain, CommonCaps: spice.DefaultCommonCaps, ChannelCaps: spice.ClientChannelCaps(spice.ChannelMain)}
	_, err = spice.Link(conn, m, f.Password, spice.LinkOptions{Deadline: time.Now().Add(10 * time.Second)})
	return err
}

// TestTunnelTerminateConsole: the console terminate route ends the
// console's tunnels: its answer counts them, and a tunnel .vv fetched
// before it no longer opens one; one fetched after does.
func TestTunnelTerminateConsole(t *testing.T) {
	e := newTunnelEnv(t, nil, true)
	before := e.fetch("plain")
	if err := linkThrough(t, before, before.Port, false); err != nil {
		t.Fatalf("the .vv before the terminate: %v", err)
	}
	resp, body := e.get("/console/lab/plain/terminate")
	var res api.TerminateConsoleResult
	if err := json.Unmarshal(body, &res); resp.StatusCode != http.StatusOK || err != nil || res.Tunnels == nil {
		t.Fatalf("terminate: %d %s (%v): want 200 and a tunnels count", resp.StatusCode, body, err)
	}
	if err := linkThrough(t, before, before.Port, false); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("the .vv fetched before the terminate: %v, want CONNECT: 403", err)
	}
	after := e.fetch("plain")
	if err := linkThrough(t, after, after.Port, false); err != nil {
		t.Errorf("a .vv fetched after the terminate: %v", err)
	}
}

// TestTunnelVV: the tunnel .vv has proxy=, a signed host, the
// hypervisor's own TLS port (plain port when it has none), CA and
// subject and the console's ticket, and a client configured only from
// it links end to end through the CONNECT listener, over TLS verified
// against the hypervisor's CA and subject (not the proxy's).
func TestTunnelVV(t *testing.T) {
	e := newTunnelEnv(t, nil, true)
	f := e.fetch("tls")
	want := vv.File{Type: "spice", Host: f.Host, TLSPort: e.tlsCon.SecurePort, Password: tunnelTicket,
		CA: string(e.ca.CertPEM), HostSubject: e.tlsCon.HostSubject, Title: "vm-tls via CONNECT tunnel", DeleteThisFile: true,
		Proxy: fmt.Sprintf("http://127.0.0.1:%d", e.proxy.ConnectAddr().Port)}
	if diff := cmp.Diff(want.String(), f.String()); diff != "" || f.Password != tunnelTicket || f.CA != want.CA {
		t.Fatalf("unexpected tunnel .vv (-want +got):\n%s", diff)
	}
	if f.Proxy != want.Proxy { // String redacts proxy=
		t.Errorf("unexpected proxy= (-want +got):\n-%s\n+%s", want.Proxy, f.Proxy)
	}
	if _, err := tunnel.Decode(f.Host); err != nil {
		t.Fatalf("host is not a signed tunnel host: %v", err)
	}
	// The host opens the TLS port only: the plain one is refused.
	if err := linkThrough(t, f, e.tlsCon.InsecurePort, false); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("plain port through the tunnel: %v, want 403", err)
	}
	if err := linkThrough(t, f, f.TLSPort, true); err != nil {
		t.Fatalf("TLS port through the tunnel: %v", err)
	}

	plain := e.fetch("plain")
	if plain.TLSPort != 0 || plain.CA != "" || plain.HostSubject != "" {
		t.Errorf("a plain-only console's .vv has TLS keys: %v", plain)
	}
	if err := linkThrough(t, plain, plain.Port, false); err != nil {
		t.Fatalf("plain console through the tunnel: %v", err)
	}
	// Two .vv files carry the same ticket (no hook) and hosts for
	// different consoles.
	if plain.Host == f.Host {
		t.Errorf("two consoles got the same host")
	}
	var served int
	for _, ev := range e.store.Audit() {
		if ev.Kind == api.EventTunnelVV {
			served++
			if strings.Contains(ev.Detail, tunnelTicket) || strings.Contains(ev.Detail, f.Host) || strings.Contains(ev.Detail, plain.Host) {
				t.Errorf("audit event holds a ticket or a host: %q", ev.Detail)
			}
		}
	}
	if served != 2 {
		t.Errorf("unexpected %s events (-want +got):\n-2\n+%d", api.EventTunnelVV, served)
	}
	for _, s := range []string{tunnelTicket, f.Host, plain.Host} {
		if strings.Contains(e.logs.String(), s) {
			t.Errorf("the API log holds a ticket or a host")
		}
	}
}

// TestTunnelVVTicketHook: with a TunnelTicket hook the .vv carries its
// ticket, and the audit event its expiry; a failing hook is a 502 that
// does not show the hook's error.
func TestTunnelVVTicketHook(t *testing.T) {
	exp := time.Now().Add(30 * time.Second)
	var calls []static.Key
	e := newTunnelEnv(t, func(ctx context.Context, k static.Key) (string, time.Time, error) {
		calls = append(calls, k)
		if k.UUID == "plain" {
			return "", time.Time{}, errors.New("QMP set_password: secret detail")
		}
		return "fresh-ticket-1", exp, nil
	}, true)
	f := e.fetch("tls")
	if f.Password != "fresh-ticket-1" {
		t.Errorf("password is not the hook's ticket")
	}
	resp, body := e.get(tunnelPath("plain"))
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(string(body), "secret detail") {
		t.Errorf("failing hook: %d %s, want 502 without the hook's error", resp.StatusCode, body)
	}
	if diff := cmp.Diff([]static.Key{{Source: "lab", UUID: "tls"}, {Source: "lab", UUID: "plain"}}, calls); diff != "" {
		t.Errorf("unexpected hook calls (-want +got):\n%s", diff)
	}
	var detail string
	for _, ev := range e.store.Audit() {
		if ev.Kind == api.EventTunnelVV {
			detail = ev.Detail
		}
	}
	if !strings.Contains(detail, "fresh ticket") || !strings.Contains(detail, exp.UTC().Format(time.RFC3339)) {
		t.Errorf("audit detail %q does not say a fresh ticket until %s", detail, exp.UTC().Format(time.RFC3339))
	}
}

func TestTunnelVVErrors(t *testing.T) {
	e := newTunnelEnv(t, nil, false)
	if resp, body := e.get(tunnelPath("tls")); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("no tunnel endpoint: %d %s, want 503", resp.StatusCode, body)
	}
	e = newTunnelEnv(t, nil, true)
	for path, status := range map[string]int{
		tunnelPath("nope"):                                                http.StatusNotFound,
		"/console/tunnel/nope/tls/console.vv":                             http.StatusNotFound,
		"/console/tunnel/lab/%2e%00/console.vv":                           http.StatusBadRequest,
		"/console/tunnel/lab/tls/console.vv?x=1":                          http.StatusOK,
		"/console/tunnel/lab/tls/console.vv/":                             http.StatusNotFound,
		"/console/tunnel/lab/tls/extra/console.vv":                        http.StatusNotFound,
		"/console/tunnel/lab/tls%2Fx/console.vv":                          http.StatusBadRequest,
		"/console/tunnel/" + strings.Repeat("a", 600) + "/tls/console.vv": http.StatusBadRequest,
	} {
		if resp, body := e.get(path); resp.StatusCode != status {
			t.Errorf("GET %s: %d %s, want %d", path[:min(len(path), 60)], resp.StatusCode, body, status)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.url+tunnelPath("tls"), nil)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
		t.Errorf("POST: %d Allow %q, want 405 Allow GET", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if _, err := api.New(api.Config{Store: e.store, Tunnel: api.TunnelEndpoint{Port: 70000}}); !errors.Is(err, api.ErrConfig) {
		t.Errorf("Tunnel.Port 70000: %v, want ErrConfig", err)
	}
}
