package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/fixtures/guest"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// serveAPI talks to a running `harness serve`.
type serveAPI struct {
	t    *testing.T
	base string
	key  string
}

func (a serveAPI) do(method, path string, withKey bool) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	if withKey {
		req.Header.Set("Authorization", "Bearer "+a.key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, body
}

// lastReload is GET /reload (seq 0 before the first).
func (a serveAPI) lastReload() api.ReloadReport {
	a.t.Helper()
	var r api.ReloadReport
	if code, body := a.do("GET", "/reload", true); code != 404 {
		if err := json.Unmarshal(body, &r); err != nil {
			a.t.Fatalf("GET /reload: %d %s", code, body)
		}
	}
	return r
}

// waitReload waits for a reload after seq with the given result (an
// editor's several writes may make refused reloads first: they change
// nothing).
func (a serveAPI) waitReload(after uint64, result, what string) api.ReloadReport {
	a.t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if r := a.lastReload(); r.Seq > after && r.Result == result {
			return r
		}
	}
	a.t.Fatalf("no %s reload 30 s after %s; last: %+v", result, what, a.lastReload())
	return api.ReloadReport{}
}

// served fails t unless console k is listed and mints a proxy .vv.
func (a serveAPI) served(step string, k static.Key) {
	a.t.Helper()
	if code, body := a.do("GET", "/console/"+k.Source+"/"+k.UUID, true); code != 200 {
		a.t.Errorf("%s: console %s is not served: %d %s", step, k, code, body)
	}
	if code, body := a.do("GET", "/console/proxy/"+k.Source+"/"+k.UUID+"/console.vv", true); code != 200 {
		a.t.Errorf("%s: no proxy .vv for %s: %d %s", step, k, code, body)
	}
}

func (a serveAPI) consoles() int {
	a.t.Helper()
	_, body := a.do("GET", "/console", true)
	var list []json.RawMessage
	if err := json.Unmarshal(body, &list); err != nil {
		a.t.Fatalf("GET /console: %s", body)
	}
	return len(list)
}

// TestIntegrationServeReload runs `harness serve` as a user would, in
// front of two hand-launched qemus (sources lab and other), keeps a live
// Go-client session open on lab's console, and reloads through every
// case and trigger: a parse error, an errored source, the fix, lab
// removed, lab back by an editor's rename, SIGHUP and POST /reload. After
// each the session must still carry keys to the guest, and no broken
// file may take a console offline.
func TestIntegrationServeReload(t *testing.T) {
	testenv.Short(t)
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	both, vms := twoQemus(t)
	f0, err := static.ParseFile(both)
	if err != nil {
		t.Fatal(err)
	}
	lab := static.Source{Name: "lab", Type: static.TypeStatic, Consoles: f0.Sources[0].Consoles[:1]}
	other := static.Source{Name: "other", Type: static.TypeStatic, Consoles: f0.Sources[0].Consoles[1:]}
	labKey, otherKey := static.Key{Source: "lab", UUID: lab.Consoles[0].UUID}, static.Key{Source: "other", UUID: other.Consoles[0].UUID}
	good := emitSources(t, lab, other)
	dir := t.TempDir()
	path := filepath.Join(dir, "sources.yaml")
	if err := os.WriteFile(path, good, 0o600); err != nil {
		t.Fatal(err)
	}
	const key = "reload-test-key-Zq9"
	t.Setenv(EnvAPIKey, key)
	h := startHarness(t, "serve", "--sources", path, "--json", "--state-dir", filepath.Join(dir, "state"))
	a := serveAPI{t: t, base: h.ready.API, key: key}
	if len(h.ready.Consoles) != 2 || h.ready.Proxy.CAFile != filepath.Join(dir, "state", "proxy-ca.pem") {
		t.Fatalf("unexpected ready line %+v", h.ready)
	}

	// The live session: main, display (first draw) and inputs.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code, body := a.do("GET", "/console/proxy/lab/"+labKey.UUID+"/console.vv", true)
	f, err := vv.Parse(body)
	if code != 200 || err != nil {
		t.Fatalf("proxy .vv: %d %v", code, err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(f.CA))
	s, err := (&spice.Dialer{Host: f.Host, TLSPort: f.TLSPort, Password: f.Password, CA: pool, HostSubject: f.HostSubject}).Connect(ctx)
	if err != nil {
		t.Fatalf("session through serve: %v\nserve stderr:\n%s", err, h.stderr)
	}
	defer s.Close()
	display, err := s.Open(ctx, spice.ChannelDisplay, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := display.InitDisplay(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := display.WaitFirstDraw(ctx); err != nil {
		t.Fatal(err)
	}
	inputs, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatal(err)
	}
	typed := ""
	alive := func(step, word string) {
		t.Helper()
		for _, c := range []*spice.Channel{s.Main, display, inputs} {
			select {
			case <-c.Done():
				t.Fatalf("%s: a channel of the live session closed: %v\nserve stderr:\n%s", step, c.Err(), h.stderr)
			default:
			}
		}
		if err := inputs.Type(word); err != nil {
			t.Fatalf("%s: typing on the live session: %v", step, err)
		}
		typed += word
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := vms[0].WaitSerial(wctx, regexp.MustCompile(regexp.QuoteMeta(guest.Prompt+typed))); err != nil {
			t.Fatalf("%s: keys typed on the live session did not reach the guest: %v\nserial: %s", step, err, vms[0].SerialTail(2))
		}
	}
	alive("start", "a")
	seq := a.lastReload().Seq

	// 1. A syntax error saved in place: refused, nothing changes.
	if err := os.WriteFile(path, []byte("- source: lab\n  type: [static\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := a.waitReload(seq, api.ReloadRefused, "a syntax error")
	seq = r.Seq
	if len(r.Problems) != 1 || r.Problems[0].Line != 1 || a.consoles() != 2 {
		t.Errorf("parse error: %+v, %d consoles; want 1 problem with its line, 2 consoles", r, a.consoles())
	}
	a.served("parse error", labKey)
	a.served("parse error", otherKey)
	alive("parse error", "b")

	// 2. A typo in lab's console: lab errored, still serving.
	renameOver(t, path, []byte(strings.Replace(string(good), "      ticket:", "      tikcet:", 1)))
	r = a.waitReload(seq, api.ReloadPartial, "a typo")
	seq = r.Seq
	if strings.Join(r.Errored, ",") != "lab" || len(r.Problems) != 2 {
		t.Errorf("errored source: %+v, want lab errored with 2 problems", r)
	}
	var src struct {
		Errored    bool   `json:"errored"`
		Consoles   int    `json:"consoles"`
		LastGoodAt string `json:"last_good_at"`
		Problems   []struct {
			Problem string `json:"problem"`
			Line    int    `json:"line"`
			Col     int    `json:"col"`
		} `json:"problems"`
	}
	_, body = a.do("GET", "/source/lab", true)
	if err := json.Unmarshal(body, &src); err != nil || !src.Errored || src.Consoles != 1 || src.LastGoodAt == "" || len(src.Problems) != 2 ||
		src.Problems[0].Line == 0 || !strings.HasPrefix(src.Problems[0].Problem, path+":") {
		t.Errorf("GET /source/lab while errored: %s", body)
	}
	a.served("errored source", labKey)
	alive("errored source", "c")

	// 3. The fix: lab recovers.
	renameOver(t, path, good)
	r = a.waitReload(seq, api.ReloadOK, "the fix")
	seq = r.Seq
	if len(r.Errored) != 0 || a.consoles() != 2 {
		t.Errorf("good save: %+v", r)
	}
	alive("good save", "d")

	// 4. lab removed from a valid file: its console goes, the session
	// stays.
	renameOver(t, path, emitSources(t, other))
	r = a.waitReload(seq, api.ReloadOK, "removing lab")
	seq = r.Seq
	if code, _ := a.do("GET", "/console/lab/"+labKey.UUID, true); code != 404 || a.consoles() != 1 {
		t.Errorf("source removed: lab still served (%d), %d consoles", code, a.consoles())
	}
	a.served("source removed", otherKey)
	alive("source removed", "e")

	// 5. lab back, saved as vim does (a new file renamed over).
	renameOver(t, path, good)
	r = a.waitReload(seq, api.ReloadOK, "lab back")
	seq = r.Seq
	a.served("rename-over", labKey)
	alive("rename-over", "f")

	// 6. SIGHUP and 7. POST /reload re-read the file.
	if err := h.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r = a.waitReload(seq, api.ReloadOK, "SIGHUP")
	seq = r.Seq
	if r.Trigger != "signal" {
		t.Errorf("SIGHUP: reload triggered by %q", r.Trigger)
	}
	alive("SIGHUP", "g")
	if code, _ := a.do("POST", "/reload", false); code != 401 {
		t.Errorf("POST /reload without the key: %d, want 401", code)
	}
	code, body = a.do("POST", "/reload", true)
	var rep api.ReloadReport
	if err := json.Unmarshal(body, &rep); code != 200 || err != nil || rep.Trigger != "api" || rep.Seq != seq+1 {
		t.Errorf("POST /reload: %d %s", code, body)
	}
	alive("POST /reload", "h")

	if code := h.stop(t); code != 0 {
		t.Fatalf("serve exited %d after SIGINT\nstderr:\n%s", code, h.stderr)
	}
	logs := h.stderr.String()
	if n := strings.Count(logs, `msg="sources reload"`); n != int(rep.Seq) {
		t.Errorf("%d reload log lines for %d reloads:\n%s", n, rep.Seq, logs)
	}
	for _, secret := range []string{lab.Consoles[0].Ticket, other.Consoles[0].Ticket, key, f.Password} {
		if strings.Contains(logs, secret) {
			t.Error("serve logged a ticket, token or key")
		}
	}
}

func emitSources(t *testing.T, sources ...static.Source) []byte {
	t.Helper()
	var b strings.Builder
	if err := static.Emit(&b, sources); err != nil {
		t.Fatal(err)
	}
	return []byte(b.String())
}

// renameOver saves data as editors that write a new file and rename it
// over the old one do.
func renameOver(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
