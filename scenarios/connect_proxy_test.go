package scenarios_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/scenarios"
)

// TestScenariosSquid runs every registered scenario with Debian's squid
// as the proxy under test (harness.ConnectProxy, a squid per lane
// allowing CONNECT only to the lane's console ports): the CONNECT family
// next to the terminating one in the same run. Scenarios about a
// terminating proxy (tokens, sessions, its listeners and API) or signed
// hosts are skipped, naming the capability squid lacks; the rest, the
// tunnel scenarios among them, run through squid with real clients.
func TestScenariosSquid(t *testing.T) {
	testenv.Short(t)
	for _, v := range harness.TargetEnvVars {
		if os.Getenv(v) != "" {
			t.Skipf("%s picks the proxy under test: TestScenarios runs against it", v)
		}
	}
	if _, err := exec.LookPath("squid"); err != nil {
		if _, err := os.Stat("/usr/sbin/squid"); err != nil {
			testenv.Missing(t, "squid", "install it with `make deps` (Debian package squid)")
		}
	}
	// A CONNECT tunnel relays bytes without reading them: channel-matrix
	// (every channel type linked, data on a spicevmc channel) shows the
	// Linux guest's channels cross it; the rest of the channels tier
	// (a guest boot each) runs through squid with CHANNELS_SQUID=1 or
	// `harness run --tier channels` (all passed through squid when the
	// tier was added).
	except := map[string]string{}
	if os.Getenv("CHANNELS_SQUID") == "" {
		for _, s := range scenarios.All() {
			if s.Tier == scenarios.Channels && s.Name != "channel-matrix" {
				except[s.Name] = "channels tier through squid: channel-matrix stands for it (CHANNELS_SQUID=1 runs it all)"
			}
		}
	}
	runEachExcept(t, except, harness.WithTarget(harness.ConnectProxy(harness.ConnectProxyConfig{Squid: true})))
}
