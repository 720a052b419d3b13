package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHostsDoc keeps docs/hosts.md true: its hosts file is
// examples/hosts/hosts.yaml, which validates, and its validate output is
// what validate --hosts prints for the broken file it describes.
func TestHostsDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/hosts.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("../../examples/hosts/hosts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, []byte("```yaml\n"+string(example)+"```\n")) {
		t.Error("docs/hosts.md does not hold examples/hosts/hosts.yaml in a yaml block")
	}
	if out, errOut, code := runCLI(t, "", "validate", "--hosts", "../../examples/hosts/hosts.yaml"); code != 0 {
		t.Errorf("validate --hosts examples/hosts/hosts.yaml: exit %d\n%s%s", code, out, errOut)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("hosts:\n  - name: x\n    uri: qemu+tcp://192.0.2.1/system\n    slots: 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "", "validate", "--hosts", bad)
	if code != 1 {
		t.Errorf("validate --hosts bad.yaml: exit %d, want 1", code)
	}
	got := "$ harness validate --hosts bad.yaml\n" + strings.ReplaceAll(out+errOut, bad, "bad.yaml")
	if !bytes.Contains(doc, []byte("```\n"+got+"```\n")) {
		start := bytes.Index(doc, []byte("$ harness validate --hosts"))
		if start < 0 {
			t.Fatal("docs/hosts.md: no validate --hosts output block")
		}
		block := doc[start:]
		block = block[:bytes.Index(block, []byte("```"))]
		t.Errorf("unexpected validate output in docs/hosts.md (-want +got):\n%s", cmp.Diff(got, string(block)))
	}
}
