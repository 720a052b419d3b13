package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

// fakeReloader answers with canned reports (the daemon's real one is
// tested in package daemon).
type fakeReloader struct {
	mu    sync.Mutex
	next  api.ReloadReport
	err   error
	last  api.ReloadReport
	calls int
}

func (f *fakeReloader) Reload(ctx context.Context) (api.ReloadReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return api.ReloadReport{}, f.err
	}
	f.last = f.next
	return f.next, nil
}

func (f *fakeReloader) LastReload() (api.ReloadReport, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.last.Seq > 0
}

func serve(t *testing.T, cfg api.Config, method, path, key string) (int, map[string]any) {
	t.Helper()
	srv, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(method, path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%s %s: %v in %q", method, path, err, rec.Body.String())
	}
	return rec.Code, body
}

func TestReloadRoute(t *testing.T) {
	st := store.New(store.Options{})
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	ok := api.ReloadReport{Seq: 2, Trigger: "api", Result: api.ReloadOK, At: at, File: "/etc/sources.yaml", Sources: 1, Consoles: 2,
		Changes: []store.Change{{Source: "lab", Action: store.ActionUpdated, Consoles: 2}}}
	partial := ok
	partial.Seq, partial.Result, partial.Errored = 3, api.ReloadPartial, []string{"lab"}
	partial.Changes = []store.Change{{Source: "lab", Action: store.ActionKept, Consoles: 2}}
	partial.Problems = []api.Problem{{Problem: "/etc/sources.yaml:9:7: sources[0].consoles[1].tiket: unknown key", File: "/etc/sources.yaml",
		Line: 9, Col: 7, Field: "sources[0].consoles[1].tiket", Message: "unknown key", Severity: "error"}}

	r := &fakeReloader{}
	cfg := api.Config{Store: st, Reloader: r, APIKey: "k3y"}

	if code, body := serve(t, cfg, "GET", "/reload", "k3y"); code != 404 || body["error"] != "no reload yet" {
		t.Errorf("GET /reload before any: %d %v, want 404", code, body)
	}
	if code, _ := serve(t, cfg, "POST", "/reload", ""); code != 401 || r.calls != 0 {
		t.Errorf("POST /reload without the key: %d (%d reloads), want 401 and no reload", code, r.calls)
	}

	r.next = ok
	code, body := serve(t, cfg, "POST", "/reload", "k3y")
	want := map[string]any{"seq": 2.0, "trigger": "api", "result": "ok", "at": "2026-11-25T12:00:00Z", "file": "/etc/sources.yaml",
		"sources": 1.0, "consoles": 2.0, "errored": []any{}, "problems": []any{}, "warnings": 0.0,
		"changes": []any{map[string]any{"source": "lab", "action": "updated", "consoles": 2.0}}}
	if code != 200 {
		t.Errorf("POST /reload, good file: status %d, want 200", code)
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("unexpected POST /reload answer (-want +got):\n%s", diff)
	}

	r.next = partial
	code, body = serve(t, cfg, "POST", "/reload", "k3y")
	if code != 422 || body["status"] != 422.0 || body["result"] != "partial" || !strings.Contains(body["error"].(string), "keeps its last good consoles") {
		t.Errorf("POST /reload, file with errors: %d %v, want 422 with the report", code, body)
	}
	if ps, _ := body["problems"].([]any); len(ps) != 1 || ps[0].(map[string]any)["line"] != 9.0 {
		t.Errorf("POST /reload, file with errors: problems %v, want the one with its line", body["problems"])
	}
	if code, got := serve(t, cfg, "GET", "/reload", "k3y"); code != 422 || got["seq"] != 3.0 {
		t.Errorf("GET /reload after a partial reload: %d %v, want 422 and seq 3", code, got)
	}

	r.err = api.ErrNoReload
	if code, body := serve(t, cfg, "POST", "/reload", "k3y"); code != 409 || !strings.Contains(body["error"].(string), "no sources file") {
		t.Errorf("POST /reload without a file: %d %v, want 409", code, body)
	}
	if code, _ := serve(t, cfg, "PUT", "/reload", "k3y"); code != 405 {
		t.Errorf("PUT /reload: %d, want 405", code)
	}
	if code, _ := serve(t, api.Config{Store: st}, "POST", "/reload", ""); code != 404 {
		t.Errorf("POST /reload without a Reloader: %d, want 404", code)
	}
}

// TestSourceStatus: /source/{name} says what an errored source serves
// and since when.
func TestSourceStatus(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	st := store.New(store.Options{Now: func() time.Time { return now }})
	c := static.Console{UUID: "u1", Name: "vm1", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 5900, Ticket: "s3cret-ticket"}
	st.Apply([]static.Source{{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{c}}}, true)
	now = now.Add(time.Minute)
	bad := static.Source{Name: "lab", Type: static.TypeStatic, Errors: []static.Problem{{File: "s.yaml", Line: 4, Col: 3,
		Field: "sources[0].consoles", Message: "is missing", Err: static.ErrMissing}}}
	st.Apply([]static.Source{bad}, true)
	code, body := serve(t, api.Config{Store: st}, "GET", "/source/lab", "")
	want := map[string]any{"source": "lab", "type": "static", "state": "errored", "errored": true, "consoles": 1.0, "has_ca_cert": false,
		"loaded_at": "2026-11-25T12:01:00Z", "last_good_at": "2026-11-25T12:00:00Z", "warnings": []any{},
		"problems": []any{map[string]any{"problem": "s.yaml:4:3: sources[0].consoles: is missing", "file": "s.yaml", "line": 4.0, "col": 3.0,
			"field": "sources[0].consoles", "message": "is missing", "severity": "error"}}}
	if code != 200 {
		t.Errorf("GET /source/lab: %d", code)
	}
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("unexpected /source/lab (-want +got):\n%s", diff)
	}
	raw, _ := json.Marshal(body)
	if strings.Contains(string(raw), "s3cret") {
		t.Error("/source/lab shows a ticket")
	}
	if code, _ := serve(t, api.Config{Store: st}, "GET", "/console/lab/u1", ""); code != http.StatusOK {
		t.Errorf("GET /console/lab/u1 of an errored source with a last good entry: %d, want 200", code)
	}
}
