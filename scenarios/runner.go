package scenarios

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/harness"
)

// DefaultTimeout bounds one scenario, lane boot included.
const DefaultTimeout = 3 * time.Minute

// Result is the outcome of one scenario run by Run.
type Result struct {
	Name     string
	Passed   bool
	Skipped  string // why, when the scenario did not apply
	Duration time.Duration
	Log      []string
}

// Applies reports why s cannot run in a lane (empty when it can):
// Internal scenarios need the in-process proxy.
func Applies(s Scenario, external bool) string {
	if external && s.Internal {
		return "needs the in-process proxy (store, audit or metrics); not applicable to an external proxy"
	}
	return ""
}

// Missing reports the first program in s.Needs that is not installed.
func Missing(s Scenario) string {
	for _, n := range s.Needs {
		prog, pkg, _ := strings.Cut(n, ":")
		if _, err := exec.LookPath(prog); err != nil {
			if pkg == "" {
				pkg = prog
			}
			return fmt.Sprintf("%s is not installed (Debian package %s; run make deps)", prog, pkg)
		}
	}
	return ""
}

// Run runs s outside `go test` (for `harness run`): it boots the lane
// with opts then s.Options, runs the scenario, and tears down. Log lines
// are also written to w when it is not nil.
func Run(ctx context.Context, s Scenario, w io.Writer, opts ...harness.Option) Result {
	start := time.Now()
	t := &runT{name: "TestScenarios/" + s.Name, w: w}
	opts = append(append([]harness.Option(nil), opts...), s.Options...)
	external, err := harness.IsExternal(opts...)
	switch {
	case err != nil:
		t.Errorf("%v", err)
	case Applies(s, external) != "":
		t.skip = Applies(s, external) // decided before booting anything
	case Missing(s) != "":
		t.Errorf("%s", Missing(s))
	default:
		ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
		t.run(func() { s.Run(ctx, t, harness.Start(t, opts...)) })
	}
	return Result{Name: s.Name, Passed: !t.Failed(), Skipped: t.skip, Duration: time.Since(start), Log: t.log}
}

// runT implements harness.T like testing.T does: Fatalf ends the
// scenario's goroutine, cleanups run last-in first-out.
type runT struct {
	name     string
	w        io.Writer
	mu       sync.Mutex
	failed   bool
	skip     string
	log      []string
	cleanups []func()
}

func (t *runT) Helper()      {}
func (t *runT) Name() string { return t.name }

func (t *runT) Logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.log = append(t.log, line)
	if t.w != nil {
		fmt.Fprintf(t.w, "    %s\n", strings.ReplaceAll(line, "\n", "\n    "))
	}
}

func (t *runT) Errorf(format string, args ...any) {
	t.Logf(format, args...)
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}

func (t *runT) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	runtime.Goexit()
}

func (t *runT) Failed() bool { t.mu.Lock(); defer t.mu.Unlock(); return t.failed }

func (t *runT) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// run calls f on its own goroutine (so Fatalf can end it), then the
// cleanups; a panic fails the scenario instead of the process.
func (t *runT) run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				t.Errorf("panic: %v", r)
			}
		}()
		f()
	}()
	<-done
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		c := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("panic in cleanup: %v", r)
				}
			}()
			c()
		}()
	}
}
