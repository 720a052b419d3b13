package api_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

// erroredSource is a static source with a problem (as the static parser
// reports it) whose consoles are never served.
func erroredSource() static.Source {
	return static.Source{Name: "broken", Type: static.TypeStatic,
		Consoles: []static.Console{{UUID: "u-broken", Name: "b", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 1,
			Ticket: "broken-ticket-Zq9"}},
		Errors: []static.Problem{{File: "sources.yaml", Line: 7, Col: 15, Field: "sources[1].consoles[0].ticket",
			Message: "is 60 bytes; a ticket is at most 59 bytes", Err: static.ErrValue}},
	}
}

// TestListingsNeverCarrySecrets renders every listing after minting
// tokens (some used, some not) and scans it, and the API's log, for every
// ticket and token value.
func TestListingsNeverCarrySecrets(t *testing.T) {
	const key = "k3y-Secret-Value-0123456789"
	e := newEnv(t, envOptions{consoles: 2, key: key, metrics: true,
		sources: []static.Source{erroredSource(), {Name: "kerbside", Type: "shakenfist"}}})
	ctx := ctxT(t)
	secrets := []string{key, ticketOf(0), ticketOf(1), "broken-ticket-Zq9"}
	for i := range 6 {
		f, _ := e.fetchVV(proxyPath(i % 2))
		secrets = append(secrets, f.Password)
		if i == 0 {
			s, err := dialerFor(t, f).Connect(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
		}
	}
	e.fetchVV(directPath(0))
	// A client that pastes a token into a path gets a 404 and the token
	// stays out of the log.
	e.get("/session/" + secrets[len(secrets)-1])
	e.get("/nope/" + secrets[len(secrets)-2])

	paths := []string{"/healthz", "/source", "/source/lab", "/source/broken", "/source/kerbside", "/console", "/session", "/metrics"}
	var consoles []api.Console
	if err := json.Unmarshal(e.getOK("/console").body, &consoles); err != nil {
		t.Fatal(err)
	}
	for _, c := range consoles {
		paths = append(paths, "/console/"+url.PathEscape(c.Source)+"/"+url.PathEscape(c.UUID))
	}
	var sessions []store.SessionInfo
	if err := json.Unmarshal(e.getOK("/session").body, &sessions); err != nil {
		t.Fatal(err)
	}
	if len(sessions) != 6 {
		t.Fatalf("%d sessions listed, want 6", len(sessions))
	}
	for _, s := range sessions {
		paths = append(paths, "/session/"+s.ID)
	}
	for _, p := range paths {
		body := string(e.getOK(p).body)
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("GET %s carries a secret (%.6s…):\n%s", p, s, body)
			}
		}
	}
	logs := e.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the API log carries a secret (%.6s…)", s)
		}
	}
	if strings.Contains(strings.ToLower(logs), "authorization") || strings.Contains(logs, "Bearer") {
		t.Error("the API log mentions the Authorization header")
	}

	// The errored source lists its problems, as strings and fields.
	var src api.Source
	if err := json.Unmarshal(e.getOK("/source/broken").body, &src); err != nil {
		t.Fatal(err)
	}
	want := api.Problem{Problem: "sources.yaml:7:15: sources[1].consoles[0].ticket: is 60 bytes; a ticket is at most 59 bytes",
		File: "sources.yaml", Line: 7, Col: 15, Field: "sources[1].consoles[0].ticket", Message: "is 60 bytes; a ticket is at most 59 bytes",
		Severity: "error"}
	if src.State != "errored" || len(src.Problems) != 1 || src.Problems[0] != want {
		t.Errorf("GET /source/broken: %+v, want errored with problem %+v", src, want)
	}
}

func TestListings(t *testing.T) {
	e := newEnv(t, envOptions{consoles: 2, sources: []static.Source{erroredSource()}})
	var consoles []api.Console
	if err := json.Unmarshal(e.getOK("/console").body, &consoles); err != nil {
		t.Fatal(err)
	}
	if len(consoles) != 2 || consoles[0].UUID != uuidOf(0) || consoles[0].ProxyVV != proxyPath(0) ||
		consoles[0].DirectVV != directPath(0) || consoles[1].InsecurePort != e.server(1).Port() {
		t.Fatalf("GET /console: %+v", consoles)
	}
	var sources []api.Source
	if err := json.Unmarshal(e.getOK("/source").body, &sources); err != nil {
		t.Fatal(err)
	}
	if len(sources) != 2 || sources[0].Name != "broken" || sources[0].State != "errored" || len(sources[0].Problems) != 1 ||
		sources[1].Name != "lab" || sources[1].State != "ok" || sources[1].Consoles != 2 {
		t.Fatalf("GET /source: %+v", sources)
	}
	var health map[string]string
	if err := json.Unmarshal(e.getOK("/healthz").body, &health); err != nil || health["status"] != "ok" {
		t.Fatalf("GET /healthz: %v %v", health, err)
	}
	_, r := e.fetchVV(proxyPath(1))
	var si store.SessionInfo
	if err := json.Unmarshal(e.getOK("/session/"+r.header.Get(api.HeaderSession)).body, &si); err != nil ||
		si.State != "minted" || si.UUID != uuidOf(1) {
		t.Fatalf("GET /session/{id}: %+v, %v", si, err)
	}
	decodeError(t, "/metrics without Config.Metrics", e.get("/metrics"), http.StatusNotFound)
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, envOptions{metrics: true})
	r := e.getOK("/metrics")
	if !strings.Contains(string(r.body), "# TYPE") {
		t.Fatalf("GET /metrics: %.200s", r.body)
	}
}

// TestErrors: malformed paths, unknown ids, wrong methods and unknown
// routes get JSON errors with the right status.
func TestErrors(t *testing.T) {
	e := newEnv(t, envOptions{sources: []static.Source{erroredSource()}})
	u := uuidOf(0)
	for _, c := range []struct {
		method, path string
		status       int
		want         string
		allow        string
	}{
		{"GET", "/nope", 404, "no route for GET /nope", ""},
		{"GET", "/source/", 404, "no route", ""},
		{"GET", "/console/lab/" + u + "/", 404, "no route", ""},
		{"GET", "/console/lab/../lab/" + u, 404, "no route", ""},
		{"GET", "/source/nosuch", 404, `store: unknown source "nosuch"`, ""},
		{"GET", "/console/nosuch/" + u, 404, `unknown source "nosuch"`, ""},
		{"GET", "/console/lab/no-such-uuid", 404, "store: unknown console lab/no-such-uuid", ""},
		{"GET", "/console/proxy/lab/no-such-uuid/console.vv", 404, "unknown console", ""},
		{"GET", "/console/direct/nosuch/" + u + "/console.vv", 404, "unknown source", ""},
		{"GET", "/console/proxy/broken/u-broken/console.vv", 404, `source "broken" is errored (1 problems; see /source/broken)`, ""},
		{"POST", "/console/lab/no-such-uuid/terminate", 404, "unknown console", ""},
		{"GET", "/session/AAAAAAAAAAAAAAAA", 404, `unknown session "AAAAAAAAAAAAAAAA"`, ""},
		{"POST", "/session/AAAAAAAAAAAAAAAA/terminate", 404, "unknown session", ""},
		{"GET", "/console/proxy/lab/a%2Fb/console.vv", 400, "malformed uuid in path: contains '/'", ""},
		{"GET", "/console/proxy/lab/%FF/console.vv", 400, "malformed uuid in path: not UTF-8", ""},
		{"GET", "/console/direct/%00/" + u + "/console.vv", 400, "malformed source in path: contains a control character", ""},
		{"GET", "/source/%20lab", 400, "malformed name in path: white space at either end", ""},
		{"GET", "/source/" + strings.Repeat("x", api.MaxPathValue+1), 400, "more than 512", ""},
		{"GET", "/console/lab/%E2%80%8Bx%1b", 400, "control character", ""},
		{"GET", "/session/not-an-id", 400, "malformed session id", ""},
		{"POST", "/console", 405, "method POST not allowed here; use GET", "GET"},
		{"DELETE", "/session/AAAAAAAAAAAAAAAA/terminate", 405, "use GET or POST", "GET, POST"},
		{"PUT", "/console/proxy/lab/" + u + "/console.vv", 405, "not allowed", "GET"},
		{"HEAD", "/console/direct/lab/" + u + "/console.vv", 405, "", "GET"},
		{"POST", "/healthz", 405, "not allowed", "GET"},
	} {
		name := c.method + " " + c.path
		r := e.do(c.method, c.path)
		if c.method == "HEAD" {
			if r.status != c.status || r.header.Get("Allow") != c.allow {
				t.Errorf("%s: %d Allow %q, want %d Allow %q", name, r.status, r.header.Get("Allow"), c.status, c.allow)
			}
			continue
		}
		msg := decodeError(t, name, r, c.status)
		if !strings.Contains(msg, c.want) {
			t.Errorf("%s: error %q, want it to contain %q", name, msg, c.want)
		}
		if got := r.header.Get("Allow"); got != c.allow {
			t.Errorf("%s: Allow %q, want %q", name, got, c.allow)
		}
	}
}

// TestOversizedHeaders: headers over MaxHeaderBytes get a JSON 431; far
// over it, net/http refuses them itself before reading them all.
func TestOversizedHeaders(t *testing.T) {
	e := newEnv(t, envOptions{})
	r := e.do("GET", "/healthz", "X-Big", strings.Repeat("a", api.DefaultMaxHeaderBytes+100))
	decodeError(t, "17 KiB of headers", r, http.StatusRequestHeaderFieldsTooLarge)
	e.getOK("/healthz") // the server is fine

	// 1 MiB of headers on a raw connection: refused by http.Server's
	// MaxHeaderBytes (net/http's own plain 431), and not read to the end.
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.api.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() {
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		for range 1024 {
			if _, err := fmt.Fprintf(conn, "X-Pad: %s\r\n", strings.Repeat("b", 1000)); err != nil {
				return // the server closed the connection: expected
			}
		}
		fmt.Fprintf(conn, "\r\n")
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("1 MiB of headers: status %d, want 431", resp.StatusCode)
	}
}

func TestAPIKey(t *testing.T) {
	const key = "correct-horse-battery-staple"
	e := newEnv(t, envOptions{key: key})
	e.getOK("/healthz")
	e.getOK("/console")
	e.fetchVV(proxyPath(0))
	for _, c := range []struct {
		name, auth, path string
	}{
		{"no header", "", "/console"},
		{"no header, .vv", "", proxyPath(0)},
		{"no header, unknown route", "", "/nope"},
		{"no header, healthz", "", "/healthz"},
		{"wrong key", "Bearer wrong-horse-battery-staple", "/console"},
		{"key prefix", "Bearer " + key[:len(key)-1], "/console"},
		{"key plus", "Bearer " + key + "x", "/console"},
		{"empty bearer", "Bearer ", "/console"},
		{"basic scheme", "Basic " + key, "/console"},
		{"bare key", key, "/console"},
	} {
		req, _ := http.NewRequest("GET", e.api.URL()+c.path, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		r := readResponse(t, resp)
		decodeError(t, c.name, r, http.StatusUnauthorized)
		if r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate header", c.name)
		}
	}
	// The scheme is case-insensitive.
	req, _ := http.NewRequest("GET", e.api.URL()+"/console", nil)
	req.Header.Set("Authorization", "bearer "+key)
	if r := readResponse(t, must(e.client.Do(req))); r.status != http.StatusOK {
		t.Errorf("lower-case bearer: %d", r.status)
	}
	if strings.Contains(e.logs.String(), key) || strings.Contains(e.logs.String(), "horse") {
		t.Error("the log carries the API key (or a presented one)")
	}
	if len(e.store.Sessions()) != 1 {
		t.Errorf("%d sessions minted, want 1: an unauthenticated .vv request minted a token", len(e.store.Sessions()))
	}
}

func readResponse(t *testing.T, resp *http.Response) response {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, []byte(b.String())}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestListenRefusesNonLoopbackWithoutKey: 0.0.0.0 (and an empty host)
// are refused before binding without an API key; loopback is fine, and
// a key allows any address.
func TestListenRefusesNonLoopbackWithoutKey(t *testing.T) {
	st := store.New(store.Options{})
	newServer := func(key string) *api.Server {
		s, err := api.New(api.Config{Store: st, APIKey: key, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		err := newServer("").Start(addr)
		if !errors.Is(err, api.ErrInsecureListen) || !strings.Contains(err.Error(), "APIKey") || !strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("Start(%q) without a key: %v, want ErrInsecureListen naming APIKey and 127.0.0.1", addr, err)
		}
	}
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := newServer("").Serve(ln); !errors.Is(err, api.ErrInsecureListen) {
		t.Errorf("Serve(0.0.0.0 listener) without a key: %v, want ErrInsecureListen", err)
	}
	ln.Close()

	for _, c := range []struct{ key, addr string }{{"", "127.0.0.1:0"}, {"", "localhost:0"}, {"k", "0.0.0.0:0"}} {
		s := newServer(c.key)
		if err := s.Start(c.addr); err != nil {
			t.Errorf("Start(%q) with key %q: %v", c.addr, c.key, err)
			continue
		}
		if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") && !strings.HasPrefix(s.URL(), "http://[::1]:") {
			t.Errorf("URL() = %q, want a loopback URL", s.URL())
		}
		if err := s.Start(c.addr); !errors.Is(err, api.ErrServing) {
			t.Errorf("second Start: %v, want ErrServing", err)
		}
		if err := s.Shutdown(ctxT(t)); err != nil {
			t.Error(err)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	st := store.New(store.Options{})
	for _, c := range []api.Config{
		{},
		{Store: st, Proxy: api.ProxyEndpoint{Port: 70000}},
		{Store: st, Proxy: api.ProxyEndpoint{TLSPort: -1}},
		{Store: st, APIKey: "has space"},
		{Store: st, MaxHeaderBytes: -1},
	} {
		if _, err := api.New(c); !errors.Is(err, api.ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", c, err)
		}
	}
	// Without a proxy endpoint the proxy route answers 503; the direct
	// route still works.
	st.Load(static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{{UUID: "u", Name: "n",
		Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 5900, Ticket: "t"}}})
	s, err := api.New(api.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctxT(t))
	client := &http.Client{}
	defer client.CloseIdleConnections()
	r := readResponse(t, must(client.Get(s.URL()+"/console/proxy/lab/u/console.vv")))
	decodeError(t, "proxy .vv without a proxy", r, http.StatusServiceUnavailable)
	if r := readResponse(t, must(client.Get(s.URL()+"/console/direct/lab/u/console.vv"))); r.status != 200 {
		t.Errorf("direct .vv: %d %s", r.status, r.body)
	}
}
