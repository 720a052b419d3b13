package api_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// backendKeys is shared by the synthetic SPICE servers so that each test
// does not start its own RSA generator (the machine has two cores).
var backendKeys *spice.KeyPool

func TestMain(m *testing.M) {
	backendKeys = spice.NewKeyPool(8)
	testenv.VerifyTestMain(m, testenv.Teardown(backendKeys.Close))
}

// env is the API in front of a real store and a real proxy, with
// synthetic SPICE servers as consoles, over loopback.
type env struct {
	t       *testing.T
	store   *store.Store
	proxy   *proxy.Proxy
	api     *api.Server
	servers []*spicetest.Server
	clock   *clock
	logs    *syncbuf.Buffer
	client  *http.Client
	key     string
}

type envOptions struct {
	consoles int             // synthetic consoles in source "lab" (default 1)
	key      string          // API key
	sources  []static.Source // more sources
	metrics  bool
}

// clock is the store's clock; tests move it forward.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time               { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration)      { c.off.Add(int64(d)) }
func uuidOf(i int) string                     { return fmt.Sprintf("00000000-0000-0000-0000-%012d", i) }
func keyOf(i int) static.Key                  { return static.Key{Source: "lab", UUID: uuidOf(i)} }
func ticketOf(i int) string                   { return fmt.Sprintf("ticket-%d-Zq9", i) }
func (e *env) server(i int) *spicetest.Server { return e.servers[i] }

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	if o.consoles == 0 {
		o.consoles = 1
	}
	e := &env{t: t, clock: &clock{}, logs: &syncbuf.Buffer{}, key: o.key}
	e.store = store.New(store.Options{Now: e.clock.now, TokenTTL: time.Minute})
	src := static.Source{Name: "lab", Type: static.TypeStatic}
	for i := range o.consoles {
		s := &spicetest.Server{Password: ticketOf(i), Keys: backendKeys}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		e.servers = append(e.servers, s)
		src.Consoles = append(src.Consoles, static.Console{UUID: uuidOf(i), Name: fmt.Sprintf("vm%d", i),
			Hypervisor: "localhost", HypervisorIP: "127.0.0.1", InsecurePort: s.Port(), Ticket: s.Password})
	}
	e.store.Load(append([]static.Source{src}, o.sources...)...)
	e.proxy = &proxy.Proxy{Store: e.store, KeyPoolSize: 4}
	if err := e.proxy.Start("127.0.0.1:0", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.proxy.Close() })
	handler := slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("API log:\n%s", e.logs)
		}
	})
	cfg := api.Config{
		Store: e.store,
		Proxy: api.ProxyEndpoint{Host: "127.0.0.1", Port: e.proxy.PlainAddr().Port, TLSPort: e.proxy.TLSAddr().Port,
			CAPEM: e.proxy.CAPEM(), HostSubject: e.proxy.HostSubject()},
		APIKey: o.key,
		Logger: slog.New(handler),
	}
	if o.metrics {
		cfg.Metrics = e.proxy.MetricsHandler()
	}
	srv, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	e.api = srv
	e.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("api Shutdown: %v", err)
		}
	})
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to the API (with the env's key, if any).
func (e *env) do(method, path string, hdr ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.api.URL()+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.key != "" {
		req.Header.Set("Authorization", "Bearer "+e.key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

func (e *env) get(path string) response { e.t.Helper(); return e.do(http.MethodGet, path) }

// getOK fetches path and fails the test unless it answers 200.
func (e *env) getOK(path string) response {
	e.t.Helper()
	r := e.get(path)
	if r.status != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	return r
}

// fetchVV fetches and parses a .vv.
func (e *env) fetchVV(path string) (*vv.File, response) {
	e.t.Helper()
	r := e.getOK(path)
	f, err := vv.Parse(r.body)
	if err != nil {
		e.t.Fatalf("GET %s: %v\n%s", path, err, r.body)
	}
	return f, r
}

func proxyPath(i int) string  { return "/console/proxy/lab/" + uuidOf(i) + "/console.vv" }
func directPath(i int) string { return "/console/direct/lab/" + uuidOf(i) + "/console.vv" }

// dialerFor is a Go SPICE client configured only from a .vv: host, port,
// tls-port, password, ca and host-subject.
func dialerFor(t *testing.T, f *vv.File) *spice.Dialer {
	t.Helper()
	d := &spice.Dialer{Host: f.Host, Port: f.Port, TLSPort: f.TLSPort, Password: f.Password, HostSubject: f.HostSubject,
		Timeout: 10 * time.Second}
	if f.CA != "" {
		d.CA = x509.NewCertPool()
		if !d.CA.AppendCertsFromPEM([]byte(f.CA)) {
			t.Fatalf("the .vv's ca is not PEM: %q", f.CA)
		}
	}
	return d
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// decodeError checks a JSON error answer.
func decodeError(t *testing.T, what string, r response, status int) string {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want JSON; body %q", what, ct, r.body)
		return ""
	}
	var body struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Errorf("%s: error body %q: %v", what, r.body, err)
	}
	if body.Error == "" || body.Status != status {
		t.Errorf("%s: error body %s, want an error message and status %d", what, r.body, status)
	}
	return body.Error
}
