package scenarios_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/harness"
	_ "github.com/spiceharness/spiceharness/harness/inproc" // the default target
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/scenarios"
)

func TestMain(m *testing.M) {
	testenv.VerifyTestMain(m)
}

// TestScenarios runs every registered scenario against real qemu, each on
// a lane of its own, against the default target (this repository's
// in-process proxy) or the one HARNESS_EXTERNAL_API / HARNESS_EXEC name.
// `go test ./scenarios -run 'TestScenarios/NAME'` runs one;
// `harness run --scenario NAME` runs the same code.
func TestScenarios(t *testing.T) {
	testenv.Short(t)
	runEach(t)
}

// runEach runs every registered scenario as a parallel subtest, each on a
// lane of its own, with target (none: the default target) before the
// scenario's own options.
func runEach(t *testing.T, target ...harness.Option) { runEachExcept(t, nil, target...) }

// runEachExcept is runEach with the scenarios of except skipped, each
// with its reason.
func runEachExcept(t *testing.T, except map[string]string, target ...harness.Option) {
	for _, s := range scenarios.All() {
		t.Run(s.Name, func(t *testing.T) {
			if why, ok := except[s.Name]; ok {
				t.Skip(why)
			}
			t.Parallel()
			runScenario(t, s, target...)
		})
	}
}

// runScenario runs s on a lane of its own built from target and then
// s.Options, and returns the lane (closed by t's cleanup); it skips t
// when s cannot run against that target.
func runScenario(t *testing.T, s scenarios.Scenario, target ...harness.Option) *harness.Env {
	why, err := scenarios.Skip(s, target...)
	if err != nil {
		t.Fatal(err)
	}
	if why != "" {
		t.Skip(why)
	}
	if why := scenarios.Missing(s); why != "" {
		testenv.Missing(t, why, "run make deps")
	}
	ctx, cancel := context.WithTimeout(t.Context(), scenarios.DefaultTimeout)
	defer cancel()
	env := harness.Start(t, append(slices.Clone(target), s.Options...)...)
	sctx, stop := env.Context(ctx)
	defer stop()
	start := time.Now()
	where := ""
	if env.Host != nil {
		where = ", VMs on hypervisor host " + env.Host.Name
	}
	t.Logf("tier %s, proxy under test %s%s", s.Tier, env.Target().Name(), where)
	s.Run(sctx, t, env)
	t.Logf("%s: %v", s.Name, time.Since(start))
	return env
}

// The registry holds exactly these scenarios, in these tiers: a scenario
// that disappears or changes tier is a decision, not an accident.
func TestRegistry(t *testing.T) {
	want := map[string]scenarios.Tier{
		"agent-clipboard":              scenarios.Channels,
		"agent-file-transfer":          scenarios.Channels,
		"audio-playback":               scenarios.Channels,
		"audio-record":                 scenarios.Channels,
		"agent-clipboard-x11":          scenarios.Channels,
		"backend-down":                 scenarios.Hardening,
		"channel-matrix":               scenarios.Channels,
		"monitors-config":              scenarios.Channels,
		"mouse-absolute":               scenarios.Channels,
		"cross-session-tokens":         scenarios.Hardening,
		"banner-through-proxy":         scenarios.Core,
		"browser-banner":               scenarios.Browser,
		"browser-typing":               scenarios.Browser,
		"direct-handshake":             scenarios.Core,
		"display-two-heads":            scenarios.Channels,
		"direct-multi-channel":         scenarios.Core,
		"display-drop-before-init":     scenarios.Hardening,
		"fault-api-restart":            scenarios.Hardening,
		"fault-qemu-killed":            scenarios.Hardening,
		"fault-qemu-stopped":           scenarios.Hardening,
		"fault-shutdown-under-load":    scenarios.Hardening,
		"fault-stale-ticket":           scenarios.Hardening,
		"foreign-session":              scenarios.Hardening,
		"idle-channels":                scenarios.Channels,
		"hostile-clients":              scenarios.Hardening,
		"key-through-proxy":            scenarios.Core,
		"libvirt-tcp-ticket-and-keys":  scenarios.Core,
		"libvirt-unix-ticket-and-keys": scenarios.Core,
		"long-typing":                  scenarios.Core,
		"multi-channel":                scenarios.Hardening,
		"need-secured":                 scenarios.Core,
		"pixels-proxy-equal-direct":    scenarios.Core,
		"proxy-handshake":              scenarios.Core,
		"qemu-link-errors":             scenarios.Core,
		"remote-viewer-proxy":          scenarios.Core,
		"smartcard-atr":                scenarios.Channels,
		"sources-roundtrip":            scenarios.Core,
		"terminate":                    scenarios.Hardening,
		"ticket-rotation":              scenarios.Core,
		"tls-backend":                  scenarios.Core,
		"token-expired":                scenarios.Hardening,
		"token-replay":                 scenarios.Hardening,
		"tunnel-foreign-port":          scenarios.Hardening,
		"tunnel-hostile-connect":       scenarios.Hardening,
		"tunnel-refused-hosts":         scenarios.Hardening,
		"tunnel-remote-viewer":         scenarios.Core,
		"tunnel-terminate":             scenarios.Hardening,
		"tunnel-pixels-equal-direct":   scenarios.Core,
		"tunnel-ticket-expiry":         scenarios.Core,
		"two-vms-isolated":             scenarios.Hardening,
		"video-stream":                 scenarios.Channels,
		"usbredir-cd":                  scenarios.Channels,
		"vv-direct-fields":             scenarios.Core,
		"vv-proxy-conventions":         scenarios.Core,
		"vv-proxy-fields":              scenarios.Core,
		"webdav-read":                  scenarios.Channels,
		"wrong-ticket":                 scenarios.Core,
		"ws-hostile":                   scenarios.Browser,
		"ws-idle-inputs":               scenarios.Browser,
		"ws-origin-refused":            scenarios.Browser,
		"ws-session":                   scenarios.Browser,
		"ws-token-replay":              scenarios.Browser,
		"input-lag":                    scenarios.Hardening,
		"reset-mid-session":            scenarios.Hardening,
		"slow-backend":                 scenarios.Hardening,
	}
	got := map[string]scenarios.Tier{}
	for _, s := range scenarios.All() {
		got[s.Name] = s.Tier
		if l, ok := scenarios.Lookup(s.Name); !ok || l.Name != s.Name {
			t.Errorf("Lookup(%q) failed", s.Name)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("unexpected registry (-want +got):\n%s", d)
	}
}
