package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/harness"
)

// DefaultTimeout bounds one scenario, lane boot included.
const DefaultTimeout = 3 * time.Minute

// Status is a scenario's outcome.
type Status string

const (
	Passed  Status = "pass"
	Failed  Status = "fail"
	Skipped Status = "skip"
	NotRun  Status = "notrun" // interrupted before it ran (Ctrl-C, the run's deadline)
)

// Result is the outcome of one scenario.
type Result struct {
	Name   string `json:"name"`
	Tier   Tier   `json:"tier"`
	Status Status `json:"status"`
	Reason string `json:"reason,omitempty"` // why it was skipped or not run; its first failure's informative line
	// Exercises is what the verdict rests on (the scenario's declaration).
	Exercises Surface       `json:"exercises"`
	Target    string        `json:"target,omitempty"` // the proxy under test
	Host      string        `json:"host,omitempty"`   // the hypervisor host its VMs ran on (hosts file)
	Duration  time.Duration `json:"-"`
	Seconds   float64       `json:"seconds"`
	Repro     string        `json:"repro,omitempty"` // reruns it (failures only); no secrets
	// LaneFailed: the lane could not start (the machine, the target's
	// start, a boot): no verdict on the scenario's checks.
	LaneFailed bool `json:"lane_failed,omitempty"`
	// Artifacts are files the scenario kept for the report (a failed
	// browser scenario's page screenshots), absolute paths.
	Artifacts []string `json:"artifacts,omitempty"`
	Log       []string `json:"-"`
}

// Skip reports why s cannot run in a lane built from opts (and the
// HARNESS_* environment), without booting anything: a capability the
// target lacks. "" when it can run.
func Skip(s Scenario, opts ...harness.Option) (string, error) {
	missing, target, err := harness.Missing(s.Requires, append(append([]harness.Option(nil), opts...), s.Options...)...)
	if err != nil {
		return "", err
	}
	if len(missing) > 0 {
		return fmt.Sprintf("needs %s, which the proxy under test (%s) lacks", capPhrase(missing), target), nil
	}
	why, err := harness.Placeable(append(append([]harness.Option(nil), opts...), s.Options...)...)
	if err != nil || why == "" {
		return "", err
	}
	return "cannot run on the hypervisor hosts: it " + why, nil
}

func capPhrase(cs []harness.Capability) string {
	if len(cs) == 1 {
		return "the " + string(cs[0]) + " capability"
	}
	return "the capabilities " + harness.CapList(cs)
}

// Missing reports the first program in s.Needs that is not installed.
func Missing(s Scenario) string {
	for _, n := range s.Needs {
		prog, pkg, _ := strings.Cut(n, ":")
		if strings.HasPrefix(prog, "/") {
			// A file a package installs (spice-html5's modules).
			if _, err := os.Stat(prog); err != nil {
				return fmt.Sprintf("%s is missing (Debian package %s; run make deps)", prog, pkg)
			}
			continue
		}
		if _, err := exec.LookPath(prog); err != nil {
			if pkg == "" {
				pkg = prog
			}
			return fmt.Sprintf("%s is not installed (Debian package %s; run make deps)", prog, pkg)
		}
	}
	return ""
}

// RunOptions configure Run.
type RunOptions struct {
	// Log gets each log line as the scenario runs (nil: kept only).
	Log io.Writer
	// Repro is the command that reruns this scenario (`harness run`
	// passes its own); "" means the `go test` form.
	Repro string
	// Timeout bounds the scenario, boot included (0: DefaultTimeout).
	Timeout time.Duration
	// Artifacts is the directory a scenario's files for the report go
	// in (each scenario a subdirectory named after it, made when the
	// first file is written); "" keeps none.
	Artifacts string
}

// Run runs s outside `go test` (for `harness run` and for tests that
// check a scenario's verdict): it boots the lane with opts then
// s.Options, runs the scenario under the lane's context (ended at once
// if the proxy under test dies) and tears down. Cancelling ctx (Ctrl-C)
// stops it.
func Run(ctx context.Context, s Scenario, ro RunOptions, opts ...harness.Option) Result {
	start := time.Now()
	r := Result{Name: s.Name, Tier: s.Tier, Exercises: s.Exercises}
	if ctx.Err() != nil {
		r.Status, r.Reason = NotRun, "interrupted before it started: "+context.Cause(ctx).Error()
		return r
	}
	timeout := ro.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := &runT{name: "TestScenarios/" + s.Name, w: ro.Log, ctx: ctx, repro: ro.Repro}
	if ro.Artifacts != "" {
		t.artifactDir = filepath.Join(ro.Artifacts, s.Name)
	}
	target := opts // Skip adds s.Options itself (harness.Channels refuses a channel named twice)
	opts = append(append([]harness.Option(nil), opts...), s.Options...)
	if _, target, err := harness.Missing(nil, opts...); err == nil {
		r.Target = target
	}
	if why, err := Skip(s, target...); err != nil {
		t.Errorf("%v", err)
	} else if why != "" {
		t.skip = why
	} else if why := Missing(s); why != "" {
		t.Errorf("%s", why)
	} else {
		t.run(func() {
			env := harness.Start(t, opts...)
			r.Host = env.HostName()
			sctx, stop := env.Context(ctx)
			defer stop()
			s.Run(sctx, t, env)
		})
	}
	r.LaneFailed = t.laneFailed()
	r.Duration = time.Since(start)
	r.Seconds = r.Duration.Round(time.Millisecond).Seconds()
	r.Log = t.lines()
	if t.Failed() {
		// The result carries the repro line; the copy the lane's failure
		// log ends with would print it twice.
		r.Log = slices.DeleteFunc(r.Log, func(l string) bool { return l == "--- repro: "+t.Repro() })
	}
	r.Artifacts = t.attached()
	switch {
	case errors.Is(context.Cause(ctx), context.Canceled) && t.skip == "":
		r.Status, r.Reason = NotRun, "interrupted: "+context.Cause(ctx).Error()
	case t.Failed():
		r.Status, r.Reason, r.Repro = Failed, t.firstFailure(), t.Repro()
	case t.skip != "":
		r.Status, r.Reason = Skipped, t.skip
	default:
		r.Status = Passed
	}
	return r
}

// runT implements harness.T like testing.T does: Fatalf, FailNow and
// Skipf end the scenario's goroutine; cleanups run last-in first-out.
type runT struct {
	name     string
	w        io.Writer
	ctx      context.Context
	repro    string
	mu       sync.Mutex
	failed   bool
	failure  string
	skip     string
	laneErr  error
	log      []string
	cleanups []func()

	artifactDir string // "": none kept
	artifacts   []string
}

// ArtifactDir is the scenario's directory for report files, made on
// first use ("" when the run keeps none).
func (t *runT) ArtifactDir() string {
	if t.artifactDir == "" {
		return ""
	}
	if err := os.MkdirAll(t.artifactDir, 0o755); err != nil {
		t.Logf("artifacts: %v", err)
		return ""
	}
	return t.artifactDir
}

// Attach lists a file in the scenario's result.
func (t *runT) Attach(path string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.artifacts = append(t.artifacts, path)
}

func (t *runT) attached() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.artifacts...)
}

// LaneFailed records that the lane could not start (harness.LaneFailer).
func (t *runT) LaneFailed(err error) { t.mu.Lock(); defer t.mu.Unlock(); t.laneErr = err }

func (t *runT) laneFailed() bool { t.mu.Lock(); defer t.mu.Unlock(); return t.laneErr != nil }

func (t *runT) Helper()                  {}
func (t *runT) Name() string             { return t.name }
func (t *runT) Context() context.Context { return t.ctx }

// Repro reruns this scenario: the runner's command, or the go test form.
func (t *runT) Repro() string {
	if t.repro != "" {
		return t.repro
	}
	return harness.Repro(t.name)
}

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
	if !t.failed {
		t.failure = reasonOf(fmt.Sprintf(format, args...))
	}
	t.failed = true
	t.mu.Unlock()
}

func (t *runT) Fatalf(format string, args ...any) {
	t.Errorf(format, args...)
	runtime.Goexit()
}

func (t *runT) FailNow() {
	t.mu.Lock()
	if !t.failed {
		t.failure = "FailNow"
	}
	t.failed = true
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *runT) Skipf(format string, args ...any) {
	t.Logf(format, args...)
	t.mu.Lock()
	t.skip = fmt.Sprintf(format, args...)
	t.mu.Unlock()
	runtime.Goexit()
}

func (t *runT) Failed() bool { t.mu.Lock(); defer t.mu.Unlock(); return t.failed }

func (t *runT) firstFailure() string { t.mu.Lock(); defer t.mu.Unlock(); return t.failure }

func (t *runT) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.log...)
}

func (t *runT) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}

// run calls f on its own goroutine (so Fatalf can end it), then the
// cleanups; a panic fails the scenario instead of the process. When the
// context ends while f is stuck, the failure says why.
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
	if err := context.Cause(t.ctx); err != nil && !t.Failed() && t.skip == "" && !errors.Is(err, context.Canceled) {
		t.Errorf("scenario deadline: %v", err)
	}
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
