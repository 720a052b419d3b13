package api_test

import (
	"flag"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

var update = flag.Bool("update", false, "rewrite the golden .vv files under fixtures/vv")

const goldenDir = "../../fixtures/vv"

// goldenStore is a store with fixed consoles: one plain, one with TLS, a
// CA and a host subject.
func goldenStore(t *testing.T) *store.Store {
	t.Helper()
	ca, err := os.ReadFile("testdata/golden-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(store.Options{})
	st.Load(
		static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{{
			UUID: "6f1d2c1e-8d0a-4c1b-9a47-0c5e3c2d1b00", Name: "vm-plain", Hypervisor: "hv1.example",
			HypervisorIP: "192.0.2.10", InsecurePort: 5900, Ticket: "golden-ticket-1",
		}}},
		static.Source{Name: "secure lab", Type: static.TypeStatic, CACert: string(ca), Consoles: []static.Console{{
			UUID: "0b9e2f64-3c1d-4a5e-8f70-123456789abc", Name: "vm-tls", Hypervisor: "hv2.example",
			HypervisorIP: "192.0.2.20", InsecurePort: 5910, SecurePort: 5911, Ticket: `golden\ticket;2`,
			HostSubject: "C=XX,O=spice-harness golden,CN=hv2.example",
		}}},
	)
	return st
}

// TestGoldenVV compares both .vv flavours with fixtures/vv. The proxy
// endpoint is given as plain values (as the harness does) so that the
// only random parts are the token and the session id, which are checked
// and then replaced by <TOKEN> and <SESSION>.
func TestGoldenVV(t *testing.T) {
	ca, err := os.ReadFile("testdata/golden-ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	st := goldenStore(t)
	srv, err := api.New(api.Config{Store: st, Logger: slog.New(slog.DiscardHandler), Proxy: api.ProxyEndpoint{
		Host: "proxy.example", Port: 5898, TLSPort: 5899, CAPEM: ca, HostSubject: "O=spice-harness,CN=localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	tokenRE := regexp.MustCompile(`(?m)^password=([A-Za-z0-9]{48})$`)
	for _, c := range []struct{ golden, path string }{
		{"proxy.vv", "/console/proxy/lab/6f1d2c1e-8d0a-4c1b-9a47-0c5e3c2d1b00/console.vv"},
		{"proxy-tls-console.vv", "/console/proxy/secure%20lab/0b9e2f64-3c1d-4a5e-8f70-123456789abc/console.vv"},
		{"direct.vv", "/console/direct/lab/6f1d2c1e-8d0a-4c1b-9a47-0c5e3c2d1b00/console.vv"},
		{"direct-tls.vv", "/console/direct/secure%20lab/0b9e2f64-3c1d-4a5e-8f70-123456789abc/console.vv"},
	} {
		t.Run(c.golden, func(t *testing.T) {
			w := httptest.NewRecorder()
			srv.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, c.path, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", c.path, w.Code, w.Body)
			}
			wantHeaders := map[string]string{"Content-Type": "application/x-virt-viewer",
				"Content-Disposition": `attachment; filename="console.vv"`, "Cache-Control": "no-store"}
			for k, v := range wantHeaders {
				if got := w.Header().Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			got := w.Body.String()
			if strings.HasPrefix(c.golden, "proxy") {
				m := tokenRE.FindStringSubmatch(got)
				if m == nil {
					t.Fatalf("no 48-character [A-Za-z0-9] token in\n%s", got)
				}
				sid := w.Header().Get(api.HeaderSession)
				info, err := st.Session(sid)
				if err != nil || info.State != "minted" {
					t.Fatalf("session %q from %s: %+v, %v", sid, api.HeaderSession, info, err)
				}
				got = strings.ReplaceAll(got, m[1], "<TOKEN>")
				got = strings.ReplaceAll(got, sid, "<SESSION>")
			}
			path := filepath.Join(goldenDir, c.golden)
			if *update {
				if err := os.MkdirAll(goldenDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGoldenVV -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("unexpected %s (-want +got):\n%s", c.golden, diff)
			}
		})
	}
	// Serving .vv files never wrote a ticket back.
	for _, k := range st.Keys() {
		tg, err := st.Console(k)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]string{"lab": "golden-ticket-1", "secure lab": `golden\ticket;2`}[k.Source]; tg.Console.Ticket != want {
			t.Errorf("ticket of %s is now %q, want %q", k, tg.Console.Ticket, want)
		}
	}
}
