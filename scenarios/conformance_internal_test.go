package scenarios

import (
	"strings"
	"testing"
)

// An expected-verdict map must name every registered scenario, and only
// those, each with a verdict.
func TestConformanceWantsEveryScenario(t *testing.T) {
	all := All()
	want := map[string]Status{}
	for _, s := range all {
		want[s.Name] = Passed
	}
	if p := expectedProblems(all, want); len(p) != 0 {
		t.Fatalf("a complete map has problems: %v", p)
	}
	delete(want, all[0].Name)
	want["no-such-scenario"] = Failed
	want[all[1].Name] = "maybe"
	want[all[2].Name] = NotRun // left out: fine
	p := strings.Join(expectedProblems(all, want), "\n")
	for _, s := range []string{
		"do not name 1 registered scenarios",
		`"` + all[0].Name + `": scenarios.?, // ` + string(all[0].Tier),
		"not registered (renamed or removed? harness run --list shows them): no-such-scenario",
		all[1].Name + `: "maybe"`,
	} {
		if !strings.Contains(p, s) {
			t.Errorf("the problems do not say %q:\n%s", s, p)
		}
	}
}
