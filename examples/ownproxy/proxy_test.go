// Package ownproxy shows how a proxy author tests their own SPICE proxy
// with spice-harness, from their own module: naiveproxy (in this
// directory) stands in for "your proxy". The harness builds nothing of its
// own proxy into this test binary: it starts naiveproxy once per lane
// (the exec target), supervises it, and drives it with real qemu and real
// SPICE clients.
package ownproxy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/scenarios"
)

// naiveproxy builds the proxy under test once.
var naiveproxy = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "naiveproxy-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "naiveproxy")
	out, err := exec.Command("go", "build", "-o", bin, "./naiveproxy").CombinedOutput()
	if err != nil {
		return "", &buildError{string(out)}
	}
	return bin, nil
})

type buildError struct{ out string }

func (e *buildError) Error() string { return "go build ./naiveproxy: " + e.out }

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := naiveproxy(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// target is naiveproxy as the harness starts it per lane: the {…}
// placeholders become the lane's sources.yaml and free loopback ports;
// it reloads the file on SIGHUP.
func target(t *testing.T, flags ...string) harness.Option {
	t.Helper()
	if testing.Short() {
		t.Skip("boots qemu and naiveproxy: skipped by -short")
	}
	bin, err := naiveproxy()
	if err != nil {
		t.Fatal(err)
	}
	return harness.WithTarget(harness.Exec(harness.ExecConfig{
		Command: bin + " --sources {sources} --listen 127.0.0.1:{plain_port} --api 127.0.0.1:{api_port} " + strings.Join(flags, " "),
		Reload:  "sighup",
	}))
}

// A test of your own, written against the harness's lane: boot a VM,
// open a session through your proxy, type, and read the guest's serial.
func TestTypingThroughMyProxy(t *testing.T) {
	env := harness.Start(t, target(t))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	vm := env.VM(0)
	s, _, err := env.Connect(ctx, harness.Proxy, vm)
	if err != nil {
		t.Fatalf("session through naiveproxy: %v", err)
	}
	defer s.Close()
	_, inputs, _, err := harness.OpenAll(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := inputs.Type("mine"); err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitSerial(ctx, regexp.MustCompile(`READY> mine`)); err != nil {
		t.Fatalf("the keys did not reach the guest: %v", err)
	}
}

// The harness's own scenarios against your proxy: a conformance matrix.
// For naiveproxy the expected verdicts are known (it is naive on
// purpose); for your proxy you would want every core scenario to pass.
func TestConformance(t *testing.T) {
	opt := target(t)
	want := map[string]scenarios.Status{
		// Core: what every SPICE proxy must do.
		"banner-through-proxy":      scenarios.Passed,
		"direct-handshake":          scenarios.Passed,
		"direct-multi-channel":      scenarios.Passed,
		"key-through-proxy":         scenarios.Passed,
		"long-typing":               scenarios.Passed,
		"need-secured":              scenarios.Skipped, // no TLS port: nothing to follow
		"pixels-proxy-equal-direct": scenarios.Passed,
		"proxy-handshake":           scenarios.Passed,
		"ticket-rotation":           scenarios.Passed,
		"vv-direct-fields":          scenarios.Passed,
		"vv-proxy-fields":           scenarios.Passed,
		"vv-proxy-conventions":      scenarios.Skipped, // this repository's own API only
		// Hardening: naiveproxy's weaknesses, each caught.
		"token-replay":             scenarios.Failed,  // tokens are reusable
		"foreign-session":          scenarios.Failed,  // connection ids are not checked
		"two-vms-isolated":         scenarios.Failed,  // … across VMs either
		"multi-channel":            scenarios.Failed,  // fixed channel caps
		"display-drop-before-init": scenarios.Failed,  // qemu crashes through it
		"token-expired":            scenarios.Skipped, // its token lifetime is not told to the harness
		"fault-stale-ticket":       scenarios.Passed,  // it answers only after qemu did
		"terminate":                scenarios.Passed,  // terminate closes the channels
		"backend-down":             scenarios.Passed,
		"fault-api-restart":        scenarios.Skipped, // no separate API to restart
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	var mu sync.Mutex
	var results []scenarios.Result
	t.Run("matrix", func(t *testing.T) {
		for _, name := range names {
			s, ok := scenarios.Lookup(name)
			if !ok {
				t.Fatalf("no scenario %q", name)
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				r := scenarios.Run(t.Context(), s, scenarios.RunOptions{}, opt)
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				t.Logf("%s [%s]: %s %s", r.Name, r.Tier, r.Status, r.Reason)
				if r.Status != want[name] {
					t.Errorf("%s: verdict %s, want %s\n%s", name, r.Status, want[name], strings.Join(r.Log, "\n"))
				}
			})
		}
	})
	sort.Slice(results, func(i, j int) bool { return results[i].Name < results[j].Name })
	var b strings.Builder
	scenarios.Summarize(results).Write(&b, "naiveproxy")
	t.Logf("conformance of naiveproxy:\n%s", b.String())
}

// When your proxy dies in the middle of a scenario, that scenario fails
// at once with the exit status and the proxy's log tail, and the next
// scenario gets a new proxy: one crash does not sink the run.
func TestAProxyThatDiesIsReported(t *testing.T) {
	opt := target(t, "--crash-on-terminate")
	terminate, _ := scenarios.Lookup("terminate")
	keys, _ := scenarios.Lookup("key-through-proxy")
	start := time.Now()
	r := scenarios.Run(t.Context(), terminate, scenarios.RunOptions{}, opt)
	if r.Status != scenarios.Failed || !strings.Contains(strings.Join(r.Log, "\n"), "proxy under test exited (exit status 3)") {
		t.Fatalf("terminate against a proxy that crashes on it: %s %q\n%s", r.Status, r.Reason, strings.Join(r.Log, "\n"))
	}
	if !strings.Contains(strings.Join(r.Log, "\n"), "crashing on /session/") {
		t.Errorf("the failure does not carry the proxy's log tail:\n%s", strings.Join(r.Log, "\n"))
	}
	t.Logf("terminate: %s after %v: %s", r.Status, r.Duration.Round(time.Millisecond), r.Reason)
	r = scenarios.Run(t.Context(), keys, scenarios.RunOptions{}, opt)
	if r.Status != scenarios.Passed {
		t.Fatalf("the scenario after the crash: %s %s", r.Status, r.Reason)
	}
	t.Logf("key-through-proxy on a new proxy process: passed; both in %v", time.Since(start).Round(time.Millisecond))
}
