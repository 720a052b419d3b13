package scenarios_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/testenv"
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
	runEach(t, harness.WithTarget(harness.ConnectProxy(harness.ConnectProxyConfig{Squid: true})))
}
