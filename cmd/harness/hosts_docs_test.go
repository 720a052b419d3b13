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

// TestHostsFlags: --hosts is refused with --libvirt and with a bad file
// (every problem listed, exit 2); a scenario no host can run is skipped
// with the reason before anything boots.
func TestHostsFlags(t *testing.T) {
	example := "../../examples/hosts/hosts.yaml"
	_, stderr, code := runCLI(t, "", "run", "--hosts", example, "--libvirt", "qemu:///system", "--scenario", "wrong-ticket")
	if code != exitUsage || !strings.Contains(stderr, "--libvirt and --hosts both say where the VMs run") {
		t.Errorf("--hosts with --libvirt: exit %d, stderr %q", code, stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("hosts:\n  - name: x\n    uri: qemu+tcp://192.0.2.1/system\n    slots: 0\n"), 0o644)
	_, stderr, code = runCLI(t, "", "up", "--hosts", bad)
	if code != exitUsage || !strings.Contains(stderr, "has 2 problems") || !strings.Contains(stderr, "bad.yaml:4:12: hosts[0].slots: is 0") {
		t.Errorf("up --hosts bad.yaml: exit %d, stderr %q", code, stderr)
	}
	stdout, stderr, code := runCLI(t, "", "run", "--hosts", example, "--scenario", "tunnel-pixels-equal-direct", "--scenario", "tls-backend", "--labels", "linux-guest")
	// Both skip, so the core tier's SPICE path went unexercised: the
	// run says INCOMPLETE and exits 1.
	if code != 1 || !strings.Contains(stdout, "INCOMPLETE: the proxy's SPICE path was not exercised") ||
		!strings.Contains(stdout, "--- SKIP: tunnel-pixels-equal-direct [core] (0.00s): cannot run on the hypervisor hosts: it needs qemu certificates that name the tunnel domain") ||
		!strings.Contains(stdout, "--- SKIP: tls-backend [core] (0.00s): cannot run on the hypervisor hosts: it needs a host with labels [linux-guest, spice-tls]") {
		t.Errorf("run --hosts: exit %d\n%s%s", code, stdout, stderr)
	}
}
