package scenarios

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/spiceharness/spiceharness/harness"
)

// TestingT is what Conformance needs of a test: *testing.T, whose Run
// takes a function of itself. (A type parameter instead of *testing.T
// keeps package testing out of the harness command, which links this
// package.)
type TestingT[T any] interface {
	harness.T
	Context() context.Context
	Parallel()
	Run(name string, f func(T)) bool
}

// expectedProblems says what is wrong with an expected-verdict map for
// the registered scenarios all: scenarios it does not name, names that
// are not registered, statuses that are no verdict.
func expectedProblems(all []Scenario, expected map[string]Status) []string {
	var problems, missing, unknown, bad []string
	for _, s := range all {
		if _, ok := expected[s.Name]; !ok {
			missing = append(missing, fmt.Sprintf("\t%q: scenarios.?, // %s: %s", s.Name, s.Tier, s.Description))
		}
	}
	known := map[string]bool{}
	for _, s := range all {
		known[s.Name] = true
	}
	for name, st := range expected {
		if !known[name] {
			unknown = append(unknown, name)
		}
		if st != Passed && st != Failed && st != Skipped && st != NotRun {
			bad = append(bad, fmt.Sprintf("%s: %q", name, st))
		}
	}
	sort.Strings(unknown)
	sort.Strings(bad)
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("the expected verdicts do not name %d registered scenarios; state each one's verdict (Passed, Failed, Skipped, or NotRun to leave it out):\n%s",
			len(missing), strings.Join(missing, "\n")))
	}
	if len(unknown) > 0 {
		problems = append(problems, fmt.Sprintf("the expected verdicts name scenarios that are not registered (renamed or removed? harness run --list shows them): %s",
			strings.Join(unknown, ", ")))
	}
	if len(bad) > 0 {
		problems = append(problems, fmt.Sprintf("expected verdicts that are none (want scenarios.Passed, Failed, Skipped or NotRun): %s", strings.Join(bad, ", ")))
	}
	return problems
}

// Conformance runs every registered scenario against the proxy under
// test that opts pick (harness.Exec(…), harness.WithTarget(…), lane
// options), each on a lane of its own as a parallel subtest of t, and
// checks each verdict against expected, the status each scenario must
// end with (Passed, Failed or Skipped; NotRun leaves a scenario out of
// this test):
//
//	func TestConformance(t *testing.T) {
//		scenarios.Conformance(t, map[string]scenarios.Status{
//			"key-through-proxy": scenarios.Passed,
//			"token-replay":      scenarios.Failed, // tokens are reusable (known, issue 12)
//			…every registered scenario…
//		}, harness.Exec("./myproxy --sources {sources} …"))
//	}
//
// expected must name every registered scenario: one it does not name (a
// scenario added to the harness since the map was written) fails the
// test, listed with its tier and description, so an upgrade of the
// harness makes the author state its verdict; a name that is not
// registered fails it too. A verdict that differs fails that subtest
// with the scenario's reason and log. The conformance matrix is logged
// at the end. Under go test -short only the map is checked.
func Conformance[T TestingT[T]](t T, expected map[string]Status, opts ...harness.Option) {
	t.Helper()
	all := All()
	for _, p := range expectedProblems(all, expected) {
		t.Errorf("%s", p)
	}
	if f := flag.Lookup("test.short"); f != nil && f.Value.String() == "true" {
		t.Skipf("Conformance boots a lane per scenario: skipped by -short (the expected verdicts were checked)")
	}
	var (
		mu      sync.Mutex
		results []Result
	)
	t.Run("scenarios", func(t T) {
		for _, s := range all {
			want, ok := expected[s.Name]
			if !ok || want == NotRun {
				continue
			}
			t.Run(s.Name, func(t T) {
				t.Parallel()
				r := Run(t.Context(), s, RunOptions{Repro: harness.Repro(t.Name())}, slices.Clone(opts)...)
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				t.Logf("%s [%s]: %s %s", r.Name, r.Tier, r.Status, r.Reason)
				if r.Status != want {
					t.Errorf("unexpected verdict of %s (-want +got):\n-%s\n+%s: %s\n%s", s.Name, want, r.Status, r.Reason, strings.Join(r.Log, "\n"))
				}
			})
		}
	})
	sort.Slice(results, func(i, j int) bool { return results[i].Name < results[j].Name })
	var b strings.Builder
	target := ""
	if len(results) > 0 {
		target = results[0].Target
	}
	Summarize(results).Write(&b, target)
	t.Logf("conformance:\n%s", b.String())
}
