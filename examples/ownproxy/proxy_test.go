// Package ownproxy shows how a proxy author tests their own SPICE proxy
// with spice-harness, from their own module: naiveproxy (in this
// directory) stands in for "your proxy". The harness builds nothing of its
// own proxy into this test binary: it starts naiveproxy once per lane
// (the exec target), supervises it, and drives it with real qemu and real
// SPICE clients.
package ownproxy

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/scenarios"
)

// naiveproxy is the proxy under test as the harness starts it per lane:
// the {…} placeholders become the lane's sources.yaml and free loopback
// ports. It re-reads a rewritten sources.yaml by itself (the harness's
// default expectation). The command is relative: the harness resolves
// it against this package's directory, where `go test` runs.
const naiveproxy = "./bin/naiveproxy --sources {sources} --listen 127.0.0.1:{plain_port} --api 127.0.0.1:{api_port}"

// TestMain builds the proxy under test where the command finds it, as
// your Makefile would build yours.
func TestMain(m *testing.M) {
	if out, err := exec.Command("go", "build", "-o", "bin/naiveproxy", "./naiveproxy").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./naiveproxy: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll("bin")
	os.Exit(code)
}

// Your first test: your proxy, a session through it, keys, the guest's echo.
func TestTypingThroughMyProxy(t *testing.T) {
	env := harness.Start(t, harness.Exec(naiveproxy))
	c := env.Client(t, 0)
	c.Type("mine")
	c.WaitGuest(`READY> mine`)
}

// The harness's own scenarios against your proxy: a conformance matrix.
// The map must name every registered scenario (a scenario added to the
// harness fails this test until its verdict is stated here). For
// naiveproxy the verdicts are known (it is naive on purpose); for your
// proxy you would want every core scenario to pass.
func TestConformance(t *testing.T) {
	scenarios.Conformance(t, map[string]scenarios.Status{
		// Core: what every SPICE proxy must do.
		"banner-through-proxy":         scenarios.Passed,
		"direct-handshake":             scenarios.Passed,
		"direct-multi-channel":         scenarios.Passed,
		"key-through-proxy":            scenarios.Passed,
		"libvirt-tcp-ticket-and-keys":  scenarios.Passed,
		"libvirt-unix-ticket-and-keys": scenarios.Passed,
		"long-typing":                  scenarios.Passed,
		"need-secured":                 scenarios.Skipped, // no TLS port: nothing to follow
		"pixels-proxy-equal-direct":    scenarios.Passed,
		"proxy-handshake":              scenarios.Passed,
		"qemu-link-errors":             scenarios.Passed,
		"remote-viewer-proxy":          scenarios.Passed,
		"sources-roundtrip":            scenarios.Passed,
		"ticket-rotation":              scenarios.Passed,
		"tls-backend":                  scenarios.Failed,  // its direct .vv leaves out qemu's TLS port
		"tunnel-pixels-equal-direct":   scenarios.Skipped, // not a CONNECT proxy
		"tunnel-remote-viewer":         scenarios.Skipped,
		"tunnel-ticket-expiry":         scenarios.Skipped,
		"vv-direct-fields":             scenarios.Passed,
		"vv-proxy-conventions":         scenarios.Skipped, // this repository's own API only
		"vv-proxy-fields":              scenarios.Passed,
		"wrong-ticket":                 scenarios.Passed,
		// Hardening: naiveproxy's weaknesses, each caught.
		"token-replay":              scenarios.Failed,  // tokens are reusable
		"foreign-session":           scenarios.Failed,  // connection ids are not checked
		"two-vms-isolated":          scenarios.Failed,  // … across VMs either
		"cross-session-tokens":      scenarios.Failed,  // a fresh token of another VM joins a live session
		"multi-channel":             scenarios.Failed,  // fixed channel caps
		"display-drop-before-init":  scenarios.Failed,  // qemu crashes through it
		"token-expired":             scenarios.Skipped, // its token lifetime is not told to the harness
		"fault-stale-ticket":        scenarios.Passed,  // it answers only after qemu did
		"terminate":                 scenarios.Passed,  // terminate closes the channels
		"backend-down":              scenarios.Passed,
		"fault-qemu-killed":         scenarios.Passed,
		"fault-qemu-stopped":        scenarios.Failed, // it waits 30 s for a hung qemu: clients give up first
		"hostile-clients":           scenarios.Passed,
		"fault-api-restart":         scenarios.Skipped, // no separate API to restart
		"fault-shutdown-under-load": scenarios.Skipped, // the in-process proxy's internals
		"tunnel-foreign-port":       scenarios.Skipped,
		"tunnel-hostile-connect":    scenarios.Skipped,
		"tunnel-refused-hosts":      scenarios.Skipped,
		"tunnel-terminate":          scenarios.Skipped,
		"input-lag":                 scenarios.Passed, // io.Copy each way: bytes pass on as they come, Nagle off
		"slow-backend":              scenarios.Passed, // a goroutine pair per connection
		"reset-mid-session":         scenarios.Passed, // one side's end closes the other
		// Browser: spice-html5's WebSocket transport, which naiveproxy does not serve.
		"browser-banner":    scenarios.Skipped,
		"browser-typing":    scenarios.Skipped,
		"ws-hostile":        scenarios.Skipped,
		"ws-idle-inputs":    scenarios.Skipped,
		"ws-origin-refused": scenarios.Skipped,
		"ws-session":        scenarios.Skipped,
		"ws-token-replay":   scenarios.Skipped,
		// Channels: every SPICE channel type with the Linux guest and the
		// Go client. naiveproxy relays each channel's bytes untouched
		// after the link, so every channel and its data cross it.
		"agent-clipboard":     scenarios.Passed,
		"agent-file-transfer": scenarios.Passed,
		"audio-playback":      scenarios.Passed,
		"audio-record":        scenarios.Passed,
		"channel-matrix":      scenarios.Passed,
		"display-two-heads":   scenarios.Passed,
		"idle-channels":       scenarios.Passed,
		"monitors-config":     scenarios.Passed,
		"mouse-absolute":      scenarios.Passed,
		"video-stream":        scenarios.Passed,
		// Channels, real clients (remote-viewer, spicy) through its .vv:
		// a relay that forwards every channel's bytes passes them.
		"agent-clipboard-x11": scenarios.Passed,
		"smartcard-atr":       scenarios.Passed,
		"usbredir-cd":         scenarios.Passed,
		"webdav-read":         scenarios.Passed,
	}, harness.Exec(naiveproxy))
}

// A proxy may refuse with other codes than this repository's, or just
// close: with --check-connection-id naiveproxy refuses a foreign channel
// with PERMISSION_DENIED, and with --close-on-bad-magic it closes on bad
// magic without a reply. A SPICE client is as safe either way, and the
// isolation scenarios pass: what they prove is that nothing reached qemu
// and the victim still works.
func TestOtherRefusalsAreRefusals(t *testing.T) {
	scenarios.Conformance(t, only(scenarios.Passed, "foreign-session", "two-vms-isolated", "hostile-clients", "cross-session-tokens"),
		harness.Exec(naiveproxy+" --check-connection-id --close-on-bad-magic"))
}

// only expects status of names and leaves every other scenario out
// (NotRun: Conformance wants them all named).
func only(status scenarios.Status, names ...string) map[string]scenarios.Status {
	m := map[string]scenarios.Status{}
	for _, s := range scenarios.All() {
		m[s.Name] = scenarios.NotRun
	}
	for _, n := range names {
		m[n] = status
	}
	return m
}

// When your proxy dies in the middle of a scenario, that scenario fails
// at once with the exit status and the proxy's log tail, and the next
// scenario gets a new proxy: one crash does not sink the run.
func TestAProxyThatDiesIsReported(t *testing.T) {
	if testing.Short() {
		t.Skip("boots qemu and naiveproxy: skipped by -short")
	}
	opt := harness.Exec(naiveproxy + " --crash-on-terminate")
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
