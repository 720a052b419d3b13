package main

import (
	"bytes"
	"context"
	"flag"
	"strings"
	"testing"

	"github.com/spiceharness/spiceharness/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under fixtures/ from the current output")

func TestMain(m *testing.M) {
	testenv.VerifyTestMain(m, testenv.Teardown(removeBinary))
}

// runCLI runs the CLI in-process and returns stdout, stderr and the exit
// code.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errw bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errw)
	return out.String(), errw.String(), code
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `harness: unknown command "frobnicate" (see harness --help)` + "\n"},
		{[]string{"validate"}, "harness: validate takes 1 argument (FILE), got 0 (see harness --help)\n"},
		{[]string{"validate", "a", "b"}, "harness: validate takes 1 argument (FILE), got 2 (see harness --help)\n"},
		{[]string{"version", "x"}, "harness: version takes no arguments, got 1 (see harness --help)\n"},
		{[]string{"emit-example", "--bogus"}, "harness: unknown flag: --bogus (see harness --help)\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", tt.args...)
			if code != exitUsage || stdout != "" || stderr != tt.want {
				t.Errorf("harness %q = (stdout %q, stderr %q, exit %d), want (\"\", %q, %d)", tt.args, stdout, stderr, code, tt.want, exitUsage)
			}
		})
	}
	if _, stderr, code := runCLI(t, ""); code != exitUsage || !strings.Contains(stderr, "Available Commands:") {
		t.Errorf("bare harness = (stderr %q, exit %d), want usage on stderr and exit %d", stderr, code, exitUsage)
	}
}

func TestVersion(t *testing.T) {
	stdout, stderr, code := runCLI(t, "", "version")
	if code != 0 || stderr != "" {
		t.Fatalf("harness version: exit %d, stderr %q", code, stderr)
	}
	if !strings.HasPrefix(stdout, "harness ") || !strings.Contains(stdout, " go1.") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("unexpected version line %q, want one line \"harness VERSION (MODULE) goX linux/…\"", stdout)
	}
}
