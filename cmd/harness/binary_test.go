package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestBinary builds the real harness binary once and checks the exit codes
// and streams a script sees.
func TestBinary(t *testing.T) {
	bin := binary(t)
	tests := []struct {
		args       []string
		code       int
		stdoutHas  string
		stderrHave string
	}{
		{[]string{"version"}, 0, "harness ", ""},
		{[]string{"validate", "../../fixtures/example-static-sources.yaml"}, 0, "", "1 source, 2 consoles"},
		{[]string{"validate", "../../fixtures/sources/valid-kerbside-mixed.yaml"}, 0, "", "1 unsupported source, 0 errors"},
		{[]string{"validate", "../../fixtures/sources/port-zero.yaml"}, 1, "insecure_port: is 0; a port is 1-65535", "1 error"},
		{[]string{"validate"}, 2, "", "harness: validate takes 1 argument"},
		{[]string{"emit-example", "-o", "-"}, 0, "type: static", ""},
	}
	for _, tt := range tests {
		cmd := exec.Command(bin, tt.args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code || !strings.Contains(stdout.String(), tt.stdoutHas) || !strings.Contains(stderr.String(), tt.stderrHave) {
			t.Errorf("harness %q = (exit %d, stdout %q, stderr %q), want exit %d, stdout with %q, stderr with %q",
				tt.args, code, stdout.String(), stderr.String(), tt.code, tt.stdoutHas, tt.stderrHave)
		}
	}
}
