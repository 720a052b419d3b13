package scenarios_test

import (
	"context"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/scenarios"
)

func TestMain(m *testing.M) { testenv.VerifyTestMain(m) }

// TestScenarios runs every registered scenario against real qemu, each on
// a lane of its own. `go test ./scenarios -run 'TestScenarios/NAME'`
// runs one; `harness run --scenario NAME` runs the same code.
func TestScenarios(t *testing.T) {
	testenv.Short(t)
	for _, s := range scenarios.All() {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			external, err := harness.IsExternal(s.Options...)
			if err != nil {
				t.Fatal(err)
			}
			if why := scenarios.Applies(s, external); why != "" {
				t.Skip(why)
			}
			if why := scenarios.Missing(s); why != "" {
				testenv.Missing(t, why, "run make deps")
			}
			ctx, cancel := context.WithTimeout(context.Background(), scenarios.DefaultTimeout)
			defer cancel()
			env := harness.Start(t, s.Options...)
			start := time.Now()
			s.Run(ctx, t, env)
			t.Logf("%s: %v", s.Name, time.Since(start))
		})
	}
}

func TestRegistry(t *testing.T) {
	all := scenarios.All()
	if len(all) < 19 {
		t.Fatalf("%d scenarios registered, the first set has at least 19", len(all))
	}
	for _, s := range all {
		if got, ok := scenarios.Lookup(s.Name); !ok || got.Name != s.Name {
			t.Errorf("Lookup(%q) failed", s.Name)
		}
	}
}
