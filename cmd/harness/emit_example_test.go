package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const exampleFixture = "../../fixtures/example-static-sources.yaml"

// TestEmitExampleMatchesFixture keeps fixtures/example-static-sources.yaml
// identical to `harness emit-example` (-update rewrites it).
func TestEmitExampleMatchesFixture(t *testing.T) {
	stdout, stderr, code := runCLI(t, "", "emit-example", "-o", "-")
	if code != 0 || stderr != "" {
		t.Fatalf("emit-example -o -: exit %d, stderr %q", code, stderr)
	}
	if *update {
		if err := os.WriteFile(exampleFixture, []byte(stdout), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(exampleFixture)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), stdout); diff != "" {
		t.Errorf("unexpected emit-example output, differs from %s (-want +got):\n%s", exampleFixture, diff)
	}
}

func TestEmitExampleWritesFiles(t *testing.T) {
	want, err := os.ReadFile(exampleFixture)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	for _, tt := range []struct {
		args []string
		file string
	}{
		{[]string{"emit-example"}, "example-static-sources.yaml"},
		{[]string{"emit-example", "-o", "other.yaml"}, "other.yaml"},
		{[]string{"emit-example", "--output=third.yaml"}, "third.yaml"},
	} {
		stdout, stderr, code := runCLI(t, "", tt.args...)
		if code != 0 || stdout != "" || stderr != "wrote "+tt.file+"\n" {
			t.Errorf("harness %q = (stdout %q, stderr %q, exit %d), want (\"\", \"wrote %s\\n\", 0)", tt.args, stdout, stderr, code, tt.file)
		}
		got, err := os.ReadFile(filepath.Join(dir, tt.file))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(got)); diff != "" {
			t.Errorf("unexpected %s (-want +got):\n%s", tt.file, diff)
		}
	}
	_, stderr, code := runCLI(t, "", "emit-example", "-o", filepath.Join(dir, "missing", "x.yaml"))
	if code != exitFailure || stderr == "" {
		t.Errorf("emit-example into a missing directory: exit %d, stderr %q; want exit 1 and one error line", code, stderr)
	}
}
