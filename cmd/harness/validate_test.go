package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// repoRoot is where golden paths are relative to: `harness validate
// fixtures/sources/x.yaml` run from the top of the repository prints them.
const repoRoot = "../.."

// hugeFixture is generated (10 MiB is not committed); its golden is.
const hugeFixture = "fixtures/sources/huge-10mb.yaml"

// writeHuge writes a valid-looking 10 MiB sources.yaml at path.
func writeHuge(t *testing.T, path string) {
	t.Helper()
	console := "    - uuid: \"6f4e2c1a-0000-4000-8000-000000000001\"\n      name: \"vm\"\n      hypervisor: \"localhost\"\n" +
		"      hypervisor_ip: \"127.0.0.1\"\n      insecure_port: 5930\n      ticket: \"ticket\"\n"
	var b bytes.Buffer
	b.WriteString("- source: huge\n  type: static\n  consoles:\n")
	for b.Len() < 10<<20 {
		b.WriteString(console)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes()[:10<<20], 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestValidateFixtures runs `harness validate` on every fixture under
// fixtures/sources and compares stdout with NAME.golden. valid-*.yaml must
// exit 0, every other fixture 1. go test ./cmd/harness -update rewrites the
// goldens.
func TestValidateFixtures(t *testing.T) {
	t.Chdir(repoRoot)
	paths, err := filepath.Glob("fixtures/sources/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 15 {
		t.Fatalf("found %d fixtures, want at least 15", len(paths))
	}
	for _, path := range append(paths, hugeFixture) {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			arg := path
			if path == hugeFixture {
				// Generated under a temp dir so that the printed path,
				// relative to it, is the same as for committed fixtures.
				dir := t.TempDir()
				writeHuge(t, filepath.Join(dir, path))
				arg = filepath.Join(dir, path)
			}
			stdout, stderr, code := runCLI(t, "", "validate", arg)
			if path == hugeFixture {
				stdout = strings.ReplaceAll(stdout, strings.TrimSuffix(arg, path), "")
			}
			wantCode := exitFailure
			if strings.HasPrefix(name, "valid-") {
				wantCode = exitOK
			}
			if code != wantCode {
				t.Errorf("exit code %d, want %d; stderr %q", code, wantCode, stderr)
			}
			if strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, " sources, ") && !strings.Contains(stderr, " source, ") {
				t.Errorf("unexpected stderr %q, want one summary line", stderr)
			}
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(stdout), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./cmd/harness -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), stdout); diff != "" {
				t.Errorf("unexpected validate output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateSummary(t *testing.T) {
	t.Chdir(repoRoot)
	tests := []struct {
		args   []string
		stdin  string
		want   string
		code   int
		stdout string
	}{{
		args: []string{"validate", "fixtures/example-static-sources.yaml"},
		want: "fixtures/example-static-sources.yaml: 1 source, 2 consoles, 0 unsupported sources, 0 errors, 0 warnings\n",
	}, {
		args: []string{"validate", "fixtures/sources/valid-kerbside-mixed.yaml"},
		want: "fixtures/sources/valid-kerbside-mixed.yaml: 2 sources, 2 consoles, 1 unsupported source, 0 errors, 0 warnings\n",
	}, {
		args: []string{"validate", "fixtures/sources/missing-fields.yaml"},
		want: "fixtures/sources/missing-fields.yaml: 1 source, 0 consoles, 0 unsupported sources, 6 errors, 0 warnings\n",
		code: exitFailure,
	}, {
		args:   []string{"validate", "-"},
		stdin:  "- source: a\n  type: statik\n",
		want:   "<stdin>: 1 source, 0 consoles, 0 unsupported sources, 1 error, 0 warnings\n",
		code:   exitFailure,
		stdout: `<stdin>:2:9: sources[0].type: unknown source type "statik"; Kerbside knows static, shakenfist, ovirt and openstack (and marks any other type errored); did you mean "static"?` + "\n",
	}, {
		args: []string{"validate", "fixtures/sources/does-not-exist.yaml"},
		want: "harness: open fixtures/sources/does-not-exist.yaml: no such file or directory\n",
		code: exitUsage,
	}}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			stdout, stderr, code := runCLI(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d", code, tt.code)
			}
			if diff := cmp.Diff(tt.want, stderr); diff != "" {
				t.Errorf("unexpected stderr (-want +got):\n%s", diff)
			}
			if tt.stdout != "" || tt.code == exitOK {
				if diff := cmp.Diff(tt.stdout, stdout); diff != "" {
					t.Errorf("unexpected stdout (-want +got):\n%s", diff)
				}
			}
		})
	}
}
