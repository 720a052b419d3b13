package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/spiceharness/spiceharness/internal/testenv"
)

// TestImportBoundaries keeps the layering honest with `go list -deps`:
// the CLI links no test-only code, a proxy author who imports the
// harness (to drive their own proxy) builds none of this repository's
// proxy, its API, gorilla/mux or Prometheus, and the VM launcher knows
// neither the sources file format nor the proxy.
func TestImportBoundaries(t *testing.T) {
	testenv.Short(t)
	for _, tc := range []struct {
		pkg    string
		banned string // a regexp over import paths, one per line
	}{
		{"github.com/spiceharness/spiceharness/cmd/harness", `^(testing|go\.uber\.org/goleak|github\.com/spiceharness/spiceharness/internal/testenv)$`},
		{"github.com/spiceharness/spiceharness/harness", `^(testing|github\.com/spiceharness/spiceharness/(proxy|proxy/store|proxy/api|proxy/daemon|harness/inproc)|github\.com/gorilla/mux|github\.com/prometheus/(client_golang|common|client_model)/?.*)$`},
		{"github.com/spiceharness/spiceharness/qemu", `^github\.com/spiceharness/spiceharness/(static|proxy)(/.*)?$`},
		{"github.com/spiceharness/spiceharness/scenarios", `^(testing|github\.com/spiceharness/spiceharness/(proxy|proxy/store|proxy/api|proxy/daemon|harness/inproc)|github\.com/gorilla/mux|github\.com/prometheus/(client_golang|common|client_model)/?.*)$`},
	} {
		out, err := exec.Command("go", "list", "-deps", tc.pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", tc.pkg, err)
		}
		re := regexp.MustCompile(tc.banned)
		for _, dep := range strings.Fields(string(out)) {
			if re.MatchString(dep) {
				t.Errorf("%s depends on %s", tc.pkg, dep)
			}
		}
	}
}
