package harness

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/internal/shell"
	"github.com/spiceharness/spiceharness/internal/tail"
	"github.com/spiceharness/spiceharness/qemu"
)

// T is the part of testing.TB the harness uses. *testing.T satisfies it,
// and so does the scenario runner of `harness run`; it also satisfies
// testify's require.TestingT (Errorf and FailNow).
type T interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	FailNow()
	Skipf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

// Start boots a lane for a test: like Up, bounded by HARNESS_TIMEOUT,
// with progress, the proxy's log and the VMs' serial output routed to
// t.Logf, and Close registered as cleanup. When the test fails, cleanup
// first logs each VM's serial and qemu log tails, the proxy's audit log
// or log tail (what the target offers) and a copy-pasteable command that
// reruns just this test against the same target.
//
// Under `go test -short` it skips (a lane boots qemu). A missing qemu
// fails the test under CI=true and skips it elsewhere.
func Start(t T, opts ...Option) *Env {
	t.Helper()
	if testShort() {
		t.Skipf("harness.Start boots qemu and the proxy under test: skipped by -short")
	}
	c, err := newConfig(opts)
	if err != nil {
		t.Fatalf("%v", err)
	}
	needQemu(t, c)
	logger := slog.New(newTLogHandler(t, "harness"))
	opts = append([]Option{Logger(logger), ProxyLogger(slog.New(newTLogHandler(t, "proxy")))}, opts...)
	e, err := Up(contextOf(t), opts...)
	if err != nil {
		laneFailed(t, err)
		t.Fatalf("harness: %v\nrepro: %s", err, reproOf(t))
	}
	stop := e.followSerial(t)
	t.Cleanup(func() {
		if err := e.TargetErr(); err != nil {
			t.Errorf("%v", err)
		}
		if err := e.HostErr(); err != nil {
			t.Errorf("%v", err)
		}
		if t.Failed() {
			e.logFailure(t)
		}
		stop()
		if err := e.Close(); err != nil {
			t.Errorf("harness: close: %v", err)
		}
	})
	return e
}

// LaneFailer is a T that wants to know when its lane could not start
// (the runner of `harness run` does: it then prints what `harness doctor`
// finds wrong with the machine).
type LaneFailer interface {
	LaneFailed(err error)
}

func laneFailed(t T, err error) {
	if l, ok := t.(LaneFailer); ok {
		l.LaneFailed(err)
	}
}

// testShort reports whether `go test -short` is in force, without
// linking package testing into programs that use this package.
func testShort() bool {
	f := flag.Lookup("test.short")
	return f != nil && f.Value.String() == "true"
}

// needQemu fails (CI=true) or skips t when the qemu binary the lane would
// run is missing.
func needQemu(t T, c *config) {
	t.Helper()
	if c.onHosts() {
		return // qemu runs on the hypervisor hosts, not here
	}
	qopts := c.qemuOpts
	if c.libvirt != "" {
		qopts = append(qopts, qemu.Libvirt(c.libvirt))
	}
	if _, err := qemu.FindBinary(qopts...); err != nil {
		if os.Getenv("CI") == "true" {
			laneFailed(t, err)
			t.Fatalf("qemu is required in CI: %v", err)
		}
		t.Skipf("qemu not available: %v (run make deps; CI=true turns this skip into a failure)", err)
	}
}

// secretVars are never printed with their values: a repro line names
// them so the shell fills them in.
var secretVars = map[string]bool{
	EnvExternalToken: true, EnvExternalPassword: true, "HARNESS_API_KEY": true, EnvExecToken: true,
}

// reproOf is the command that reruns t: its own (`harness run` sets one)
// or Repro.
func reproOf(t T) string {
	if r, ok := t.(interface{ Repro() string }); ok {
		return r.Repro()
	}
	return Repro(t.Name())
}

// Repro is a shell command that reruns the named test from its
// package's directory, with the HARNESS_* and CI variables of this run
// (secrets by name only: HARNESS_EXTERNAL_TOKEN="$HARNESS_EXTERNAL_TOKEN").
func Repro(testName string) string {
	env := ReproEnv()
	pkg, dir := "./...", ""
	if wd, err := os.Getwd(); err == nil {
		dir = wd
		if root := moduleRoot(wd); root != "" {
			if rel, err := filepath.Rel(root, wd); err == nil {
				pkg, dir = "./"+filepath.ToSlash(rel), root
			}
		}
	}
	cmd := fmt.Sprintf("%sgo test %s -run %s -count=1 -v", strings.Join(append(env, ""), " "), pkg, shell.Quote("^"+runPattern(testName)+"$"))
	if dir == "" {
		return cmd
	}
	return "cd " + shell.Quote(dir) + " && " + cmd
}

// ReproEnv lists the HARNESS_* and CI variables of this process as
// shell assignments, secrets by reference.
func ReproEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case secretVars[k]:
			env = append(env, k+`="$`+k+`"`)
		case strings.HasPrefix(k, "HARNESS_") || k == "CI":
			env = append(env, shell.Quote(kv))
		}
	}
	sort.Strings(env)
	return env
}

// runPattern anchors each subtest level: "TestScenarios/a/b" becomes
// "TestScenarios$/^a$/^b".
func runPattern(name string) string { return strings.ReplaceAll(name, "/", "$/^") }

func moduleRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// logFailure logs what a failed test needs to be diagnosed.
func (e *Env) logFailure(t T) {
	for _, vm := range e.VMs {
		if vm == nil || vm.VM == nil {
			continue
		}
		t.Logf("--- %s serial tail:\n%s", vm, vm.SerialTail(20))
		if lp, ok := vm.VM.(interface{ LogPath() string }); ok {
			t.Logf("--- %s qemu log tail:\n%s", vm, tail.File(lp.LogPath(), 20))
		}
	}
	if a, ok := e.target.(Auditor); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ev, err := a.Audit(ctx)
		cancel()
		if err == nil && len(ev) > 0 {
			var b strings.Builder
			for _, x := range ev[max(0, len(ev)-40):] {
				fmt.Fprintf(&b, "%s %-16s %s/%s session=%s %s\n", x.Time.Format("15:04:05.000"), x.Kind, x.Source, x.UUID, x.Session, x.Detail)
			}
			t.Logf("--- proxy audit (last %d of %d):\n%s", min(40, len(ev)), len(ev), b.String())
		}
	}
	e.saveFailureArtifacts(t)
	if f, ok := e.target.(FailureLogger); ok {
		if s := f.FailureLog(); s != "" {
			t.Logf("%s", s)
		}
	}
	t.Logf("--- proxy under test: %s", e.target.Name())
	if e.Host != nil {
		t.Logf("--- hypervisor host: %s (%s, consoles at %s); %s=%s reruns it there", e.Host.Name, e.Host.URI, e.Host.Address, EnvHost, e.Host.Name)
	}
	t.Logf("--- repro: %s", reproOf(t))
}

// followSerial routes each VM's new serial output to t.Logf until stop.
func (e *Env) followSerial(t T) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, vm := range e.VMs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var off int64
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				off = logNewLines(t, vm, off)
				select {
				case <-done:
					logNewLines(t, vm, off)
					return
				case <-tick.C:
				}
			}
		}()
	}
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func logNewLines(t T, vm *VM, off int64) int64 {
	f, err := os.Open(vm.SerialLog())
	if err != nil {
		return off
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() <= off {
		return off
	}
	buf := make([]byte, min(st.Size()-off, 64<<10))
	n, _ := f.ReadAt(buf, off)
	chunk := string(buf[:n])
	last := strings.LastIndexByte(chunk, '\n')
	if last < 0 {
		return off // wait for a whole line
	}
	for _, line := range strings.Split(chunk[:last], "\n") {
		t.Logf("serial %s: %s", vm.Console().Name, strings.TrimRight(line, "\r"))
	}
	return off + int64(last) + 1
}

// tLogHandler writes slog records through t.Logf.
type tLogHandler struct {
	t      T
	prefix string
	attrs  []slog.Attr
	mu     *sync.Mutex
	done   *bool
}

func newTLogHandler(t T, prefix string) *tLogHandler {
	h := &tLogHandler{t: t, prefix: prefix, mu: &sync.Mutex{}, done: new(bool)}
	// After the test ends t.Logf panics; late proxy goroutines must not.
	t.Cleanup(func() { h.mu.Lock(); *h.done = true; h.mu.Unlock() })
	return h
}

func (h *tLogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *tLogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", h.prefix, r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	if !*h.done {
		h.t.Logf("%s", b.String())
	}
	return nil
}

func (h *tLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *tLogHandler) WithGroup(string) slog.Handler { return h }
