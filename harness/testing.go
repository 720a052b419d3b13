package harness

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/testenv"
)

// T is the part of testing.TB the harness uses. *testing.T satisfies it,
// and so does the scenario runner of `harness run`.
type T interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Failed() bool
	Cleanup(func())
}

// Start boots a lane for a test: like Up, bounded by HARNESS_TIMEOUT,
// with progress and the VMs' serial output routed to t.Logf, and Close
// registered as cleanup. When the test fails, cleanup first logs each
// VM's serial and qemu log tails, the proxy's audit log and a
// copy-pasteable command that reruns just this test.
//
// Under CI=true a missing qemu fails the test; elsewhere it skips.
func Start(t T, opts ...Option) *Env {
	t.Helper()
	needQemu(t)
	logger := slog.New(newTLogHandler(t, "harness"))
	opts = append([]Option{Logger(logger), ProxyLogger(slog.New(newTLogHandler(t, "proxy")))}, opts...)
	e, err := Up(context.Background(), opts...)
	if err != nil {
		t.Fatalf("harness: %v\nrepro: %s", err, Repro(t.Name()))
	}
	stop := e.followSerial(t)
	t.Cleanup(func() {
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

// needQemu fails (CI) or skips when qemu is not installed. Only testing
// types can skip; other T implementations fail.
func needQemu(t T) {
	bin := os.Getenv("HARNESS_QEMU")
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	if tb, ok := t.(testing.TB); ok {
		testenv.NeedCommand(tb, bin, "qemu-system-x86")
	}
}

// Repro is a shell command that reruns the named test, with the
// HARNESS_* and CI variables of this run.
func Repro(testName string) string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "HARNESS_") || strings.HasPrefix(kv, "CI=") {
			env = append(env, shellQuote(kv))
		}
	}
	sort.Strings(env)
	pkg := "./..."
	if wd, err := os.Getwd(); err == nil {
		if root := moduleRoot(wd); root != "" {
			if rel, err := filepath.Rel(root, wd); err == nil {
				pkg = "./" + filepath.ToSlash(rel)
				wd = root
			}
		}
		return fmt.Sprintf("cd %s && %sgo test %s -run %s -count=1 -v", shellQuote(wd), strings.Join(append(env, ""), " "), pkg, shellQuote("^"+runPattern(testName)+"$"))
	}
	return fmt.Sprintf("go test %s -run %s -v", pkg, shellQuote("^"+runPattern(testName)+"$"))
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

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '-' || r == '_' || r == '.' || r == '/' || r == '=' || r == ':' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// logFailure logs what a failed test needs to be diagnosed.
func (e *Env) logFailure(t T) {
	for _, vm := range e.VMs {
		if vm == nil || vm.VM == nil {
			continue
		}
		t.Logf("--- %s serial tail:\n%s", vm, vm.SerialTail(20))
		if lp, ok := vm.VM.(interface{ LogPath() string }); ok {
			if b, err := os.ReadFile(lp.LogPath()); err == nil {
				t.Logf("--- %s qemu log tail:\n%s", vm, tail(string(b), 20))
			}
		}
	}
	if ev := e.Audit(); len(ev) > 0 {
		var b strings.Builder
		for _, x := range ev[max(0, len(ev)-40):] {
			fmt.Fprintf(&b, "%s %-16s %s/%s session=%s %s\n", x.Time.Format("15:04:05.000"), x.Kind, x.Source, x.UUID, x.Session, x.Detail)
		}
		t.Logf("--- proxy audit (last %d of %d):\n%s", min(40, len(ev)), len(ev), b.String())
	}
	t.Logf("--- repro: %s", Repro(t.Name()))
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
