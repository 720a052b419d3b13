package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/scenarios"
)

// --list with --shard lists each shard's scenarios: together the shards
// list every scenario once.
func TestRunListShards(t *testing.T) {
	all, _, code := runCLI(t, "", "run", "--list")
	if code != 0 {
		t.Fatalf("run --list: exit %d", code)
	}
	var got []string
	for k := 1; k <= 3; k++ {
		out, stderr, code := runCLI(t, "", "run", "--list", "--shard", strings.Join([]string{string(rune('0' + k)), "3"}, "/"))
		if code != 0 {
			t.Fatalf("run --list --shard %d/3: exit %d: %s", k, code, stderr)
		}
		got = append(got, strings.Split(strings.TrimSpace(out), "\n")...)
	}
	want := strings.Split(strings.TrimSpace(all), "\n")
	sort.Strings(got)
	sort.Strings(want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("unexpected union of the shards' lists (-all +shards):\n%s", d)
	}
	if _, stderr, code := runCLI(t, "", "run", "--list", "--shard", "3/2"); code != exitUsage || !strings.Contains(stderr, "1 ≤ K ≤ N") {
		t.Errorf("--shard 3/2: exit %d, %q", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", "run", "--list", "--shard-durations", "x.xml"); code != exitUsage || !strings.Contains(stderr, "needs --shard") {
		t.Errorf("--shard-durations alone: exit %d, %q", code, stderr)
	}
}

// report merge joins the shards' JUnit and JSON reports, refuses
// overlapping shards, and exits 1 when the merged run does not pass.
func TestReportMerge(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, rs ...scenarios.Result) string {
		var b bytes.Buffer
		var err error
		p := filepath.Join(dir, name)
		if strings.HasSuffix(name, ".xml") {
			err = scenarios.WriteJUnit(&b, "exec ./p", time.Unix(0, 0), rs)
		} else {
			err = scenarios.WriteJSONLines(&b, rs)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := mk("a.xml", scenarios.Result{Name: "key-through-proxy", Tier: scenarios.Core, Status: scenarios.Passed, Exercises: scenarios.ProxySPICE, Duration: time.Second})
	b := mk("b.json", scenarios.Result{Name: "terminate", Tier: scenarios.Hardening, Status: scenarios.Passed, Exercises: scenarios.ProxySPICE | scenarios.ProxyAPI, Seconds: 2})
	out := filepath.Join(dir, "all.xml")
	_, stderr, code := runCLI(t, "", "report", "merge", a, b, "-o", out)
	if code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"merged 2 reports, 2 scenarios", "core         1 passed", "PASS"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("merge's summary lacks %q:\n%s", want, stderr)
		}
	}
	x, _ := os.ReadFile(out)
	for _, want := range []string{`<testcase name="key-through-proxy"`, `<testcase name="terminate"`, `value="proxy-spice|proxy-api"`} {
		if !strings.Contains(string(x), want) {
			t.Errorf("merged JUnit lacks %s:\n%s", want, x)
		}
	}
	if stdout, _, code := runCLI(t, "", "report", "merge", a, b, "-o", "-"); code != 0 || strings.Count(stdout, "\n") != 2 || !strings.Contains(stdout, `"name":"terminate"`) {
		t.Errorf("merge -o -: exit %d, JSON lines %q", code, stdout)
	}
	if _, stderr, code := runCLI(t, "", "report", "merge", a, a, "-o", out); code != exitUsage || !strings.Contains(stderr, "key-through-proxy in more than one report") {
		t.Errorf("overlapping shards: exit %d, %q", code, stderr)
	}
	failed := mk("c.json", scenarios.Result{Name: "token-replay", Tier: scenarios.Hardening, Status: scenarios.Failed, Exercises: scenarios.ProxySPICE, Reason: "linked"})
	if _, stderr, code := runCLI(t, "", "report", "merge", a, failed, "-o", out); code != exitFailure || !strings.Contains(stderr, "FAIL") {
		t.Errorf("a merged run with a failure: exit %d, %q", code, stderr)
	}
	if _, stderr, code := runCLI(t, "", "report", "merge", a); code != exitUsage || !strings.Contains(stderr, "needs -o") {
		t.Errorf("no -o: exit %d, %q", code, stderr)
	}
}

// doctor says exactly what to install when a program is missing.
func TestDoctorSaysWhatToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	stdout, stderr, code := runCLI(t, "", "doctor")
	if code != exitFailure {
		t.Errorf("doctor on a machine without qemu: exit %d, want %d", code, exitFailure)
	}
	for _, want := range []string{
		"FAIL  qemu", "fix: apt-get install qemu-system-x86 (or: make deps)",
		"FAIL  spicy-screenshot  spicy-screenshot is not installed (needed by real-client scenarios",
		"fix: apt-get install spice-client-gtk (or: make deps)",
		"fix: apt-get install virt-viewer",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("doctor's output lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "requirement") {
		t.Errorf("doctor's error line: %q", stderr)
	}
}

// When a lane cannot start, harness run's block for it says what doctor
// finds wrong with the machine, once, with the fix.
func TestRunPrintsTheMachinesProblems(t *testing.T) {
	// The real binary: under go test -short a lane is skipped before it
	// could fail.
	cmd := exec.Command(binary(t), "run", "--scenario", "vv-direct-fields", "--scenario", "key-through-proxy", "--parallel", "2")
	// A missing qemu fails the lane under CI=true instead of skipping it.
	cmd.Env = append(os.Environ(), "CI=true", "HARNESS_QEMU=/nonexistent/qemu-system-x86_64")
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailure {
		t.Errorf("exit %v, want %d", err, exitFailure)
	}
	stdout := out.String()
	for _, name := range []string{"vv-direct-fields", "key-through-proxy"} {
		i := strings.Index(stdout, "--- FAIL: "+name)
		if i < 0 {
			t.Fatalf("no FAIL line for %s:\n%s", name, stdout)
		}
		block := stdout[i:]
		if end := strings.Index(block[1:], "--- "); end >= 0 {
			block = block[:end+1]
		}
		for _, want := range []string{"reason: qemu is required in CI", "machine: qemu:", "fix: apt-get install qemu-system-x86 (or: make deps)", "repro: "} {
			if !strings.Contains(block, want) {
				t.Errorf("%s's block lacks %q:\n%s", name, want, block)
			}
		}
		if n := strings.Count(block, "repro: "); n != 1 {
			t.Errorf("%s's block has %d repro lines:\n%s", name, n, block)
		}
	}
}

// TestIntegrationShardedRunMerges: harness run --shard 1/2 and 2/2 run
// every selected scenario exactly once between them, and their merged
// JUnit report has the cases of an unsharded run of the same scenarios.
func TestIntegrationShardedRunMerges(t *testing.T) {
	testenv.Short(t, "qemu lanes, a go build of the harness command")
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	dir := t.TempDir()
	sel := []string{"--scenario", "vv-direct-fields", "--scenario", "sources-roundtrip", "--scenario", "proxy-handshake", "--scenario", "token-replay", "--parallel", "2"}
	run := func(name string, extra ...string) string {
		report := filepath.Join(dir, name+".xml")
		cmd := exec.Command(binary(t), append(append([]string{"run", "--junit", report}, sel...), extra...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("harness run %s: %v\n%s", name, err, out.String())
		}
		return report
	}
	whole := run("whole")
	s1, s2 := run("shard1", "--shard", "1/2"), run("shard2", "--shard", "2/2")
	merged := filepath.Join(dir, "merged.xml")
	if _, stderr, code := runCLI(t, "", "report", "merge", s1, s2, "-o", merged); code != 0 {
		t.Fatalf("report merge: exit %d: %s", code, stderr)
	}
	cases := func(path string) []string {
		rep, err := readReportFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rep.Results {
			out = append(out, string(r.Tier)+" "+r.Name+" "+string(r.Status)+" "+r.Exercises.String())
		}
		sort.Strings(out)
		return out
	}
	one, two := cases(s1), cases(s2)
	if len(one) == 0 || len(two) == 0 || len(one)+len(two) != 4 {
		t.Errorf("shards ran %v and %v: want the 4 scenarios split between them", one, two)
	}
	if d := cmp.Diff(cases(whole), cases(merged)); d != "" {
		t.Errorf("unexpected merged cases (-unsharded +merged):\n%s", d)
	}
}
