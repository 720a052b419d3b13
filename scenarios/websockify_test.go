package scenarios_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/scenarios"
)

// TestScenariosWebsockify runs every registered scenario with Debian's
// websockify as the proxy under test (harness.WebSocket, a websockify per
// lane with its token plugin and ExpectOrigin): the browser family next
// to the terminating and CONNECT ones in the same run. Scenarios that
// need spice-gtk's clients (no WebSocket there), a terminating proxy or
// a CONNECT proxy are skipped, naming the capability websockify lacks;
// the rest, the browser tier among them, run through websockify with the
// Go client, one WebSocket per channel.
func TestScenariosWebsockify(t *testing.T) {
	testenv.Short(t)
	for _, v := range harness.TargetEnvVars {
		if os.Getenv(v) != "" {
			t.Skipf("%s picks the proxy under test: TestScenarios runs against it", v)
		}
	}
	if _, err := exec.LookPath("websockify"); err != nil {
		testenv.Missing(t, "websockify", "install it with `make deps` (Debian package websockify)")
	}
	except := map[string]string{"libvirt-unix-ticket-and-keys": libvirtElsewhere, "libvirt-tcp-ticket-and-keys": libvirtElsewhere}
	// websockify relays each channel's bytes between a WebSocket and a
	// TCP socket without reading them: channel-matrix (every channel
	// type linked, 256 KiB both ways on a spicevmc channel) shows the
	// Linux guest's channels cross it. The rest of the tier (a guest boot
	// each, ~130 s of lanes on the 2-core machine) runs through it with
	// CHANNELS_WEBSOCKIFY=1 or `harness run --tier channels --websockify`.
	if os.Getenv("CHANNELS_WEBSOCKIFY") == "" {
		for _, s := range scenarios.All() {
			if s.Tier == scenarios.Channels && s.Name != "channel-matrix" {
				except[s.Name] = "channels tier through websockify: channel-matrix stands for it (CHANNELS_WEBSOCKIFY=1 runs it all)"
			}
		}
	}
	runEachExcept(t, except, harness.WithTarget(harness.WebSocket(harness.WebSocketConfig{Websockify: true})))
}

// libvirtElsewhere: the libvirt scenarios vary how qemu runs, not the
// proxy: TestScenarios and TestScenariosSquid run them, and through
// websockify they would add some 100 s of libvirt domains (measured on
// the 2-core machine) for nothing the Go-client scenarios do not check.
const libvirtElsewhere = "the libvirt backend is checked by TestScenarios and TestScenariosSquid; the gateway path is the same Go client"
