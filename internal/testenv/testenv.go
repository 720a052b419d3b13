// Package testenv decides what a test may assume about the machine.
//
// A test that needs an external program (qemu, spicy-screenshot, nasm, …)
// calls NeedCommand. Outside CI a missing program skips the test with a
// message saying how to fix the machine; under CI=true it fails, because a
// skipped test must never count as a pass in the CI lane.
package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// InCI reports whether the CI lane is running (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips t (or fails it under CI) with why and how to fix it.
func Missing(t testing.TB, what, fix string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required in CI: %s", what, fix)
	}
	t.Skipf("%s not available (%s); CI=true turns this skip into a failure", what, fix)
}

// NeedCommand returns the path of program, or skips/fails t when it is
// not on PATH. pkg names the Debian package that provides it.
func NeedCommand(t testing.TB, program, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(program)
	if err != nil {
		Missing(t, program, "install it with `make deps` (Debian package "+pkg+")")
	}
	return p
}

// Short skips t under `go test -short` (never in CI, where -short is not
// used). needs says what the test would use that -short rules out
// ("qemu", "a go build of the CLI", …); the skip message names it.
func Short(t testing.TB, needs ...string) {
	t.Helper()
	if testing.Short() {
		if InCI() {
			t.Fatal("-short is not allowed in CI: integration tests must run")
		}
		if len(needs) == 0 {
			t.Skip("integration test skipped by -short")
		}
		t.Skip("skipped by -short: needs " + strings.Join(needs, ", "))
	}
}
