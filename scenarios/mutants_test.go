package scenarios_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/harness/inproc"
	"github.com/spiceharness/spiceharness/internal/mutant"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/scenarios"
)

// guards says which scenarios guard each guarantee: against the proxy
// with that guarantee switched off (its mutant), exactly these fail.
// docs/mutants.md explains each row.
var guards = map[mutant.Mutation][]string{
	mutant.ReusableTokens:         {"token-replay", "ws-token-replay"},
	mutant.NoConnIDBinding:        {"foreign-session", "two-vms-isolated"},
	mutant.BindClaimedSession:     {"cross-session-tokens"},
	mutant.FixedCaps:              {"multi-channel"},
	mutant.NoDisplayGuard:         {"display-drop-before-init"},
	mutant.EarlyLinkOK:            {"backend-down", "fault-qemu-stopped", "fault-stale-ticket"},
	mutant.TerminateKeepsChannels: {"fault-api-restart", "terminate"},
	mutant.TerminateKeepsTunnels:  {"tunnel-terminate"},
	mutant.TerminateKeepsHosts:    {"tunnel-terminate"},
	mutant.ShutdownKeepsChannels:  {"fault-shutdown-under-load"},
	mutant.NoHandshakeDeadline:    {"hostile-clients", "ws-hostile"},
	mutant.WSIdlePerSocket:        {"ws-idle-inputs"},
	mutant.WSNoOriginCheck:        {"ws-origin-refused"},
	mutant.WSTextFramesAsData:     {"ws-hostile"},
	mutant.WSNoUpgradeDeadline:    {"ws-hostile"},
	mutant.WSNoSubprotocol:        {"browser-banner", "browser-typing"},
	mutant.WSInputsFullHeaders:    {"browser-typing"},

	mutant.AllowlistMissingUsbredir: {"channel-matrix", "usbredir-cd"},
	mutant.SpicevmcOneWay:           {"channel-matrix", "usbredir-cd", "webdav-read"},
	mutant.AgentOwnCaps:             {"agent-clipboard", "agent-clipboard-x11"},
	mutant.MsgCap64K:                {"video-stream", "usbredir-cd", "webdav-read"},
	mutant.DisplayAckWindow:         {"video-stream"},
	mutant.IdlePerChannel:           {"idle-channels"},
	mutant.NagleOn:                  {"input-lag"},
	mutant.StoreAndForward:          {"slow-backend"},
	mutant.SharedRelayLock:          {"slow-backend"},
	mutant.ResetKeepsBackend:        {"reset-mid-session"},
	mutant.SpicevmcNoCompressed:     {"usbredir-cd"},
}

// tunnelMutants change only the CONNECT listener: they run against the
// tunnel scenarios (those that require tunnel-vv), and the other mutants
// against the rest. A CONNECT tunnel carries bytes to qemu's own port and
// never meets the link handshake, relay or tokens the other mutants
// change; the SPICE scenarios open no tunnel for these to change.
var tunnelMutants = []mutant.Mutation{mutant.TerminateKeepsTunnels, mutant.TerminateKeepsHosts}

// wsMutants change only the WebSocket listener (its upgrade, framing,
// origins and idle limit): they run against the browser tier's scenarios
// (those that require websocket), which alone open WebSockets.
var wsMutants = []mutant.Mutation{mutant.WSIdlePerSocket, mutant.WSNoOriginCheck, mutant.WSTextFramesAsData, mutant.WSNoUpgradeDeadline,
	mutant.WSNoSubprotocol, mutant.WSInputsFullHeaders}

// browserMutants are the WebSocket mutants the browser-oracle scenarios
// (spice-html5 in Chromium, ~3 s of CPU per lane) run against besides
// those whose rows name them: the two whose failure only a browser sees,
// so the matrix shows which of the two scenarios each one breaks. The
// other WebSocket mutants change what a browser page never does (text
// frames, an upgrade head that never ends, a foreign Origin: the page
// is served on the gateway's own) or what the browser scenarios' lanes do
// not set (an idle limit); ws-session and the other Go-client scenarios
// cover the listener there.
var browserMutants = []mutant.Mutation{mutant.WSNoSubprotocol, mutant.WSInputsFullHeaders}

// netMutants change only how the relay moves bytes in time (Nagle,
// message-sized reads, one lock for all relays, a reset's cleanup): only
// the network-condition scenarios (netScenarios, whose lanes shape their
// links) can see them, so they run against those and netCanary, a cheap
// core scenario that shows the relay still works; the network scenarios
// run against no other mutant (each takes ~10 s).
var netMutants = []mutant.Mutation{mutant.NagleOn, mutant.StoreAndForward, mutant.SharedRelayLock, mutant.ResetKeepsBackend}

var netScenarios = []string{"input-lag", "reset-mid-session", "slow-backend"}

// timingScenarios decide on medians of time measured in one run (a
// stall of tens of ms, a transfer that takes twice as long): against
// their own mutants they get a second run when the first one passes, so
// that a loaded machine's noise in one run does not read as a mutant the
// scenario cannot catch. Against the real proxy they get no second run.
var timingScenarios = []string{"input-lag", "slow-backend"}

const netCanary = "key-through-proxy"

// needsBrowser reports whether s runs spice-html5 in Chromium.
func needsBrowser(s scenarios.Scenario) bool {
	return slices.ContainsFunc(s.Needs, func(n string) bool { return strings.HasPrefix(n, "chromium:") })
}

// family sorts scenarios and mutants by the listener they exercise:
// "tunnel" (CONNECT), "websocket", or "spice" (the SPICE listeners).
// A mutant runs against its family's scenarios and against any other
// scenario its guards name: the single-use token and the handshake
// deadline live in code the SPICE and WebSocket listeners share.
func scenarioFamily(s scenarios.Scenario) string {
	switch {
	case s.Tier == scenarios.Channels:
		return "channels"
	case slices.Contains(netScenarios, s.Name):
		return "network"
	case slices.Contains(s.Requires, harness.CapTunnelVV):
		return "tunnel"
	case slices.Contains(s.Requires, harness.CapWebSocket):
		return "websocket"
	}
	return "spice"
}

func mutantFamily(m mutant.Mutation) string {
	switch {
	case slices.Contains(channelsMutants, m):
		return "channels"
	case slices.Contains(netMutants, m):
		return "network"
	case slices.Contains(tunnelMutants, m):
		return "tunnel"
	case slices.Contains(wsMutants, m):
		return "websocket"
	}
	return "spice"
}

// channelsMutants break what only the channels tier uses (every channel
// type, agent data, spicevmc, display streams): they run against the
// channels tier (Linux guest lanes, ~7 s of boot each under TCG) and the
// SPICE mutants never do. Under `make test` each runs only against the
// scenarios its row names and channel-matrix (every channel type linked,
// the one scenario any of them could plausibly break besides its own);
// MUTANTS_FULL=1 runs each against the whole tier (docs/mutants.md).
var channelsMutants = []mutant.Mutation{mutant.AllowlistMissingUsbredir, mutant.MsgCap64K, mutant.SpicevmcOneWay,
	mutant.AgentOwnCaps, mutant.DisplayAckWindow, mutant.IdlePerChannel, mutant.SpicevmcNoCompressed}

// channelsSample is the channels scenario every channels mutant runs
// against under `make test`, besides its guards.
const channelsSample = "channel-matrix"

// notThroughTheProxy are the scenarios that never use the proxy under
// test (they check qemu, the sources file and the direct path the other
// scenarios compare against): no mutant can change their verdict, so the
// matrix leaves them out.
var notThroughTheProxy = []string{"direct-handshake", "direct-multi-channel", "qemu-link-errors", "sources-roundtrip", "wrong-ticket"}

// TestMutants runs the scenarios against each mutant of the in-process
// proxy and checks that exactly the scenarios guarding the switched-off
// guarantee fail: every hardening guarantee has a scenario that catches
// its absence, and no other scenario changes its verdict.
// MUTANTS=fixed-caps,… runs some mutants only.
func TestMutants(t *testing.T) {
	testenv.Short(t, "qemu and real clients, for every scenario against every mutant")
	only := strings.FieldsFunc(os.Getenv("MUTANTS"), func(r rune) bool { return r == ',' })
	var mu sync.Mutex
	table := map[mutant.Mutation][]string{}
	for _, m := range mutant.All {
		if len(only) > 0 && !slices.Contains(only, string(m)) {
			continue
		}
		want, ok := guards[m]
		if !ok {
			t.Fatalf("mutant %s has no guarding scenario in the table", m)
		}
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			opt := harness.WithTarget(inproc.New(inproc.Mutate(m)))
			for _, s := range scenarios.All() {
				if slices.Contains(notThroughTheProxy, s.Name) ||
					(scenarioFamily(s) != mutantFamily(m) && !slices.Contains(want, s.Name) && !(mutantFamily(m) == "network" && s.Name == netCanary)) ||
					(needsBrowser(s) && !slices.Contains(browserMutants, m) && !slices.Contains(want, s.Name)) ||
					(mutantFamily(m) == "channels" && os.Getenv("MUTANTS_FULL") == "" && s.Name != channelsSample && !slices.Contains(want, s.Name)) {
					continue
				}
				t.Run(s.Name, func(t *testing.T) {
					t.Parallel()
					r := scenarios.Run(t.Context(), s, scenarios.RunOptions{Artifacts: t.ArtifactDir()}, opt)
					if r.Status == scenarios.Passed && slices.Contains(want, s.Name) && slices.Contains(timingScenarios, s.Name) {
						// A timing check compares medians of one run: on a
						// loaded machine the mutant's stall can hide in one
						// run's noise. A second run must catch it then.
						t.Logf("%s passed against the %s mutant once (a timing check): running it again", s.Name, m)
						r = scenarios.Run(t.Context(), s, scenarios.RunOptions{Artifacts: t.ArtifactDir()}, opt)
					}
					if r.Status == scenarios.Failed && needsBrowser(s) {
						wantPageScreenshot(t, r)
					}
					switch {
					case r.Status == scenarios.Skipped:
						testenv.Missing(t, r.Reason, "run make deps")
					case r.Status == scenarios.Failed:
						mu.Lock()
						table[m] = append(table[m], s.Name)
						mu.Unlock()
						if !slices.Contains(want, s.Name) {
							t.Errorf("%s fails against the %s mutant, which it does not guard: %s\n%s", s.Name, m, r.Reason, strings.Join(r.Log, "\n"))
						}
					case slices.Contains(want, s.Name):
						t.Errorf("%s passes against the %s mutant: it does not catch the missing guarantee (%s)", s.Name, m, r.Status)
					}
				})
			}
		})
	}
	t.Cleanup(func() {
		var b strings.Builder
		for _, m := range mutant.All {
			got := table[m]
			sort.Strings(got)
			fmt.Fprintf(&b, "%-26s caught by %s\n", m, strings.Join(got, ", "))
		}
		t.Logf("mutants:\n%s", b.String())
	})
}

// The scenarios the mutant matrix leaves out are the ones whose verdict
// no SPICE link through the proxy decides.
func TestNotThroughTheProxyIsDeclared(t *testing.T) {
	for _, name := range notThroughTheProxy {
		s, ok := scenarios.Lookup(name)
		if !ok {
			t.Errorf("notThroughTheProxy names %s, which is not registered", name)
			continue
		}
		if s.Exercises&scenarios.ProxySPICE != 0 {
			t.Errorf("%s is left out of the mutant matrix but declares Exercises %s: a SPICE link through the proxy decides it", name, s.Exercises)
		}
	}
}

// wantPageScreenshot fails t unless a failed browser scenario's result
// lists a PNG of its page that shows something: what its report
// attaches.
func wantPageScreenshot(t *testing.T, r scenarios.Result) {
	t.Helper()
	for _, a := range r.Artifacts {
		if filepath.Ext(a) != ".png" {
			continue
		}
		b, err := os.ReadFile(a)
		if err != nil {
			t.Errorf("%s: artifact %s: %v", r.Name, a, err)
			return
		}
		img, err := harness.DecodePNG(b)
		if err != nil || img.Blank() {
			t.Errorf("%s: the page screenshot %s is no picture of the page (%v)", r.Name, a, err)
		}
		return
	}
	t.Errorf("%s failed without a page screenshot among its artifacts %q", r.Name, r.Artifacts)
}
