package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/daemon"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/static"
)

// TestReloadCases drives one daemon through every kind of reload of its
// sources file, through every trigger, with a live session open on the
// console of source "lab" the whole time: the session must carry keys
// after each reload, and no broken file may take a console offline.
func TestReloadCases(t *testing.T) {
	ctx := ctxT(t, 2*60e9)
	a, b := backend(t, "ticket-a"), backend(t, "ticket-b")
	lab := static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{consoleOf("a1", a)}}
	other := static.Source{Name: "other", Type: static.TypeStatic, Consoles: []static.Console{consoleOf("b1", b)}}
	good := emit(t, lab, other)

	dir := t.TempDir()
	path := filepath.Join(dir, "sources.yaml")
	must(t, os.WriteFile(path, good, 0o600))
	log, logBuf := logs(t)
	got := make(reloads, 16)
	d, err := daemon.New(daemon.Config{Sources: path, Logger: log, OnReload: got.hook, ReloadOnSIGHUP: true, APIKey: "k3y"})
	must(t, err)
	defer d.Close()
	must(t, d.Start(ctx))
	if r := got.next(t, "Start"); r.Result != api.ReloadOK || r.Trigger != daemon.TriggerStart {
		t.Fatalf("unexpected first reload %+v", r)
	}
	s, in, _ := connect(t, ctx, d, static.Key{Source: "lab", UUID: "a1"}, "k3y")
	relays(t, "start", s, in, a, 0x10)

	type want struct {
		result   string
		trigger  daemon.Trigger
		changes  []store.Change
		keys     []string
		errored  []string
		problems []string // substrings of the problems, in order
	}
	check := func(step string, r daemon.ReloadResult, w want, key uint16) {
		t.Helper()
		if r.Result != w.result || r.Trigger != w.trigger {
			t.Errorf("%s: unexpected reload (-want +got):\n-%s by %s\n+%s by %s", step, w.result, w.trigger, r.Result, r.Trigger)
		}
		if w.changes != nil {
			if diff := cmp.Diff(w.changes, r.Changes); diff != "" {
				t.Errorf("%s: unexpected changes (-want +got):\n%s", step, diff)
			}
		}
		if diff := cmp.Diff(w.keys, keysOf(d)); diff != "" {
			t.Errorf("%s: unexpected consoles served (-want +got):\n%s", step, diff)
		}
		if diff := cmp.Diff(w.errored, r.Errored); diff != "" {
			t.Errorf("%s: unexpected errored sources (-want +got):\n%s", step, diff)
		}
		if len(r.Problems) != len(w.problems) {
			t.Errorf("%s: %d problems, want %d: %v", step, len(r.Problems), len(w.problems), r.Problems)
		} else {
			for i, p := range r.Problems {
				if !strings.Contains(p.String(), w.problems[i]) {
					t.Errorf("%s: problem %d is %q, want it to contain %q", step, i, p, w.problems[i])
				}
			}
		}
		relays(t, step, s, in, a, key)
	}
	both := []string{"lab/a1", "other/b1"}

	// 1. A YAML syntax error written in place: refused, nothing changes.
	rewrite(t, path, []byte("- source: lab\n  type: [static\n"))
	check("parse error", got.next(t, "a syntax error"), want{result: api.ReloadRefused, trigger: daemon.TriggerChange,
		keys: both, problems: []string{path + ":1:1: yaml: did not find expected ',' or ']'"}}, 0x11)

	// 2. A typo'd console key in lab: lab keeps its last good console and
	// is errored; other reloads normally.
	typo := strings.Replace(string(good), "      insecure_port:", "      insecure_prot:", 1)
	renameOver(t, path, []byte(typo))
	r := got.next(t, "a typo")
	check("errored source", r, want{result: api.ReloadPartial, trigger: daemon.TriggerChange,
		changes: []store.Change{{Source: "lab", Action: store.ActionKept, Consoles: 1}, {Source: "other", Action: store.ActionUnchanged, Consoles: 1}},
		keys:    both, errored: []string{"lab"},
		problems: []string{"sources[0].consoles[0].insecure_port: is missing", `sources[0].consoles[0].insecure_prot: unknown key "insecure_prot"`}}, 0x12)
	if !errors.Is(r.Err, static.ErrInvalid) {
		t.Errorf("errored source: Err = %v, want a *static.ParseError", r.Err)
	}
	code, body := get(t, d, "GET", "/source/lab", "k3y")
	var src struct {
		Errored    bool   `json:"errored"`
		Consoles   int    `json:"consoles"`
		LoadedAt   string `json:"loaded_at"`
		LastGoodAt string `json:"last_good_at"`
		Problems   []struct {
			Line, Col int
			Problem   string
		} `json:"problems"`
	}
	must(t, json.Unmarshal(body, &src))
	if code != 200 || !src.Errored || src.Consoles != 1 || src.LastGoodAt == "" || src.LoadedAt == src.LastGoodAt || len(src.Problems) != 2 || src.Problems[0].Line == 0 {
		t.Errorf("GET /source/lab while errored: %d %s", code, body)
	}
	if v := metric(t, d, "spice_proxy_source_errored", "source", "lab"); v != 1 {
		t.Errorf("spice_proxy_source_errored{source=lab} = %v, want 1", v)
	}

	// 3. The fix, saved by rename: lab recovers.
	renameOver(t, path, good)
	check("good save", got.next(t, "the fix"), want{result: api.ReloadOK, trigger: daemon.TriggerChange,
		changes: []store.Change{{Source: "lab", Action: store.ActionRecovered, Consoles: 1}, {Source: "other", Action: store.ActionUnchanged, Consoles: 1}},
		keys:    both}, 0x13)

	// 4. lab removed from a valid file: its console goes, its live
	// session stays.
	renameOver(t, path, emit(t, other))
	check("source removed", got.next(t, "removing lab"), want{result: api.ReloadOK, trigger: daemon.TriggerChange,
		changes: []store.Change{{Source: "lab", Action: store.ActionRemoved}, {Source: "other", Action: store.ActionUnchanged, Consoles: 1}},
		keys:    []string{"other/b1"}}, 0x14)

	// 5. A file whose only lab entry has a mistyped `source` key: lab is
	// not named, so other is not dropped for it... and lab stays gone.
	renameOver(t, path, good)
	got.next(t, "lab back")
	bad := strings.Replace(string(good), `- source: "other"`, `- sorce: "other"`, 1)
	renameOver(t, path, []byte(bad))
	check("nameless entry", got.next(t, "a mistyped source key"), want{result: api.ReloadPartial, trigger: daemon.TriggerChange,
		changes: []store.Change{{Source: "lab", Action: store.ActionUnchanged, Consoles: 1}, {Source: "other", Action: store.ActionAbsent, Consoles: 1}},
		keys:    both, problems: []string{"source: is missing", `unknown key "sorce"`}}, 0x15)

	// 6. Same size, same mtime, in place: a ticket of other changes.
	renameOver(t, path, good)
	got.next(t, "good again")
	rewrite(t, path, []byte(strings.ReplaceAll(string(good), "ticket-b", "ticket-c")))
	check("same-size rewrite", got.next(t, "a same-size rewrite"), want{result: api.ReloadOK, trigger: daemon.TriggerChange,
		changes: []store.Change{{Source: "lab", Action: store.ActionUnchanged, Consoles: 1}, {Source: "other", Action: store.ActionUpdated, Consoles: 1}},
		keys:    both}, 0x16)
	if tg, _ := d.Store().Console(static.Key{Source: "other", UUID: "b1"}); tg.Console.Ticket != "ticket-c" {
		t.Errorf("same-size rewrite: other/b1 still has its old ticket")
	}

	// 7. SIGHUP, POST /reload and Reload re-read an unchanged file.
	must(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	check("SIGHUP", got.next(t, "SIGHUP"), want{result: api.ReloadOK, trigger: daemon.TriggerSignal, keys: both}, 0x17)
	if code, _ := get(t, d, "POST", "/reload", ""); code != 401 {
		t.Errorf("POST /reload without the API key: %d, want 401", code)
	}
	code, body = get(t, d, "POST", "/reload", "k3y")
	if code != 200 || !strings.Contains(string(body), `"trigger": "api"`) {
		t.Errorf("POST /reload: %d %s", code, body)
	}
	check("POST /reload", got.next(t, "POST /reload"), want{result: api.ReloadOK, trigger: daemon.TriggerAPI, keys: both}, 0x18)
	rewrite(t, path, []byte("not: [a, list"))
	if got.next(t, "a broken file"); true {
		code, body = get(t, d, "POST", "/reload", "k3y")
	}
	if code != 422 || !strings.Contains(string(body), `"result": "refused"`) {
		t.Errorf("POST /reload of a broken file: %d %s, want 422 refused", code, body)
	}
	check("POST /reload, broken", got.next(t, "POST /reload"), want{result: api.ReloadRefused, trigger: daemon.TriggerAPI, keys: both,
		problems: []string{"yaml: "}}, 0x19)
	renameOver(t, path, good)
	got.next(t, "good again")
	res, err := d.Reload(ctx)
	must(t, err)
	check("Reload", got.next(t, "Reload"), want{result: api.ReloadOK, trigger: daemon.TriggerCall, keys: both}, 0x1e)

	// Every reload was one log line and one count; no ticket was logged.
	last, _ := d.LastReload()
	if last.Seq != res.Seq {
		t.Errorf("LastReload seq %d, Reload seq %d", last.Seq, res.Seq)
	}
	if n := strings.Count(logBuf.String(), `"msg":"sources reload"`); n != int(last.Seq) {
		t.Errorf("%d reload log lines for %d reloads", n, last.Seq)
	}
	var total float64
	for _, r := range []string{"ok", "partial", "refused"} {
		total += metric(t, d, "spice_proxy_sources_reload_total", "result", r)
	}
	if total != float64(last.Seq) || metric(t, d, "spice_proxy_sources_reload_total", "result", "refused") != 3 {
		t.Errorf("spice_proxy_sources_reload_total: %v in all, %v refused; want %d and 3", total,
			metric(t, d, "spice_proxy_sources_reload_total", "result", "refused"), last.Seq)
	}
	for _, secret := range []string{"ticket-a", "ticket-b", "ticket-c", "k3y"} {
		if strings.Contains(logBuf.String(), secret) {
			t.Errorf("the log holds a secret (%s)", secret)
		}
	}
	must(t, d.Close())
	select {
	case <-s.Main.Done():
	case <-ctx.Done():
		t.Error("the session outlived Close")
	}
}

// TestPolling: without inotify, a same-size rewrite that keeps the mtime
// is still seen, and a deleted file changes nothing until it is back.
func TestPolling(t *testing.T) {
	ctx := ctxT(t, 60e9)
	a := backend(t, "ticket-a")
	lab := static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{consoleOf("a1", a)}}
	path := filepath.Join(t.TempDir(), "sources.yaml")
	must(t, os.WriteFile(path, emit(t, lab), 0o600))
	got := make(reloads, 8)
	d, err := daemon.New(daemon.Config{Sources: path, Watch: daemon.WatchPoll, PollInterval: 10e6, OnReload: got.hook})
	must(t, err)
	defer d.Close()
	must(t, d.Start(ctx))
	got.next(t, "Start")

	lab.Consoles[0].Ticket = "ticket-z"
	rewrite(t, path, emit(t, lab))
	if r := got.next(t, "a same-size rewrite"); r.Result != api.ReloadOK || r.Changes[0].Action != store.ActionUpdated {
		t.Errorf("same-size rewrite: %+v, want ok and lab updated", r)
	}
	must(t, os.Remove(path))
	r := got.next(t, "removing the file")
	if r.Result != api.ReloadRefused || len(r.Problems) != 1 || !strings.Contains(r.Problems[0].String(), "cannot be read: no such file") {
		t.Errorf("file removed: %+v, want refused, cannot be read", r)
	}
	if diff := cmp.Diff([]string{"lab/a1"}, keysOf(d)); diff != "" {
		t.Errorf("file removed: unexpected consoles (-want +got):\n%s", diff)
	}
	must(t, os.WriteFile(path, emit(t, lab), 0o600))
	if r := got.next(t, "the file back"); r.Result != api.ReloadOK {
		t.Errorf("file back: %+v", r)
	}
}

// TestStartWithErrors: an invalid file fails Start with every problem and
// nothing listening, unless AllowErrors; then the fix is picked up.
func TestStartWithErrors(t *testing.T) {
	ctx := ctxT(t, 60e9)
	a := backend(t, "ticket-a")
	lab := static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{consoleOf("a1", a)}}
	path := filepath.Join(t.TempDir(), "sources.yaml")
	broken := strings.Replace(string(emit(t, lab)), "ticket:", "tikcet:", 1)
	must(t, os.WriteFile(path, []byte(broken), 0o600))

	d, err := daemon.New(daemon.Config{Sources: path})
	must(t, err)
	err = d.Start(ctx)
	var pe *static.ParseError
	if !errors.As(err, &pe) || len(pe.Problems) != 2 {
		t.Errorf("Start on an invalid file: %v, want a *static.ParseError with 2 problems", err)
	}
	if d.APIURL() != "" || d.Proxy().Stats().Listening {
		t.Error("Start failed but left something listening")
	}
	must(t, d.Close())

	got := make(reloads, 4)
	log, _ := logs(t)
	d, err = daemon.New(daemon.Config{Sources: path, AllowErrors: true, OnReload: got.hook, Logger: log})
	must(t, err)
	defer d.Close()
	must(t, d.Start(ctx))
	if r := got.next(t, "Start"); r.Result != api.ReloadPartial || len(r.Errored) != 1 {
		t.Errorf("Start with AllowErrors: %+v", r)
	}
	if info, _ := d.Store().Source("lab"); !info.Errored || info.Consoles != 0 || !info.LastGoodAt.IsZero() {
		t.Errorf("a never-good source: %+v, want errored, serving nothing", info)
	}
	renameOver(t, path, emit(t, lab))
	if r := got.next(t, "the fix"); r.Result != api.ReloadOK || len(keysOf(d)) != 1 {
		t.Errorf("after the fix: %+v, consoles %v", r, keysOf(d))
	}

	d2, err := daemon.New(daemon.Config{Sources: filepath.Join(t.TempDir(), "missing.yaml")})
	must(t, err)
	if err := d2.Start(ctx); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Start on a missing file: %v, want ErrNotExist", err)
	}
	d2.Close()
}

// TestLoad: the programmatic API serves exactly the sources given, with
// the file's semantics, and checks them.
func TestLoad(t *testing.T) {
	ctx := ctxT(t, 60e9)
	a := backend(t, "ticket-a")
	var d *daemon.Daemon
	if d.Close() != nil || d.Shutdown(ctx) != nil {
		t.Error("a nil daemon's Close or Shutdown failed")
	}
	d, err := daemon.New(daemon.Config{})
	must(t, err)
	defer d.Close()
	must(t, d.Start(ctx))
	lab := static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{consoleOf("a1", a)}}
	if r := d.Load(lab); r.Result != api.ReloadOK || len(keysOf(d)) != 1 {
		t.Fatalf("Load: %+v", r)
	}
	s, in, _ := connect(t, ctx, d, static.Key{Source: "lab", UUID: "a1"}, "")
	relays(t, "Load", s, in, a, 0x10)
	broken := lab
	broken.Consoles = []static.Console{{UUID: "a1", Name: "x", Hypervisor: "h", HypervisorIP: "127.0.0.1", InsecurePort: 0, Ticket: "t"}}
	r := d.Load(broken)
	if r.Result != api.ReloadPartial || len(r.Problems) != 1 || !strings.Contains(r.Problems[0].String(), `source "lab": consoles[0].insecure_port`) {
		t.Errorf("Load of an invalid source: %+v", r)
	}
	relays(t, "Load invalid", s, in, a, 0x11)
	if _, err := d.Reload(ctx); !errors.Is(err, daemon.ErrNoSources) {
		t.Errorf("Reload without a file: %v, want ErrNoSources", err)
	}
	if code, body := get(t, d, "POST", "/reload", ""); code != 409 {
		t.Errorf("POST /reload without a file: %d %s, want 409", code, body)
	}
	if err := d.Start(ctx); !errors.Is(err, daemon.ErrStarted) {
		t.Errorf("second Start: %v", err)
	}
	must(t, d.RestartAPI(ctx))
	relays(t, "RestartAPI", s, in, a, 0x12)
	if code, _ := get(t, d, "GET", "/healthz", ""); code != 200 {
		t.Errorf("API after RestartAPI: %d", code)
	}
	s.Close()
	must(t, d.Shutdown(context.Background()))
	must(t, d.Close())
	if err := d.Start(ctx); !errors.Is(err, daemon.ErrClosed) {
		t.Errorf("Start after Shutdown: %v", err)
	}
}
