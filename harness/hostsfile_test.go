package harness

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/internal/pki"
)

func writeCA(t *testing.T, dir string) string {
	t.Helper()
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestParseHosts(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, dir)
	file := filepath.Join(dir, "hosts.yaml")
	data := `hosts:
  - name: hv1
    uri: qemu+ssh://root@hv1.example/system
    address: 192.0.2.10
    labels: [kvm, spice-tls]
    slots: 4
    pool_dir: /srv/spice-harness
    tls:
      ca_cert: ca.pem
      host_subject: "O=Example,CN=hv1"
  - name: local
    uri: qemu:///system
    slots: 1
`
	hosts, err := ParseHosts(file, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		h.CAPEM = nil
	}
	want := []*Host{
		{Name: "hv1", URI: "qemu+ssh://root@hv1.example/system", Address: "192.0.2.10", Labels: []string{"kvm", "spice-tls"}, Slots: 4,
			PoolDir: "/srv/spice-harness", HostSubject: "O=Example,CN=hv1"},
		{Name: "local", URI: "qemu:///system", Address: "127.0.0.1", Slots: 1, Local: true},
	}
	if d := cmp.Diff(want, hosts); d != "" {
		t.Errorf("unexpected hosts (-want +got):\n%s", d)
	}
}

// TestParseHostsProblems: every problem is listed, each at its
// file:line:col with the field's path.
func TestParseHostsProblems(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, dir)
	tests := []struct {
		name, data string
		want       []string
	}{
		{"empty", "", []string{"F:1:1: hosts: the file is empty; a hosts file is a mapping with a hosts: list"}},
		{"list at top", "- name: a\n", []string{"F:1:1: hosts: must be a mapping with a hosts: list, got a list"}},
		{"unknown top key", "hosts: [{name: a, uri: 'qemu:///system', slots: 1}]\nhost: x\n", []string{"F:2:1: host: unknown key (a hosts file has only hosts:)"}},
		{"syntax", "hosts:\n  - name: [\n", []string{"F:2:1: yaml: did not find expected node content"}},
		{"every field wrong", `hosts:
  - name: "bad name"
    uri: http://x
    address: hv1.example
    labels: [KVM, kvm, kvm]
    slots: 0
    pool_dir: relative/dir
    colour: blue
`, []string{
			`F:2:11: hosts[0].name: "bad name": want 1-63 characters of [A-Za-z0-9._-], starting with a letter or digit`,
			`F:3:10: hosts[0].uri: "http://x": unsupported scheme "http"`,
			`F:4:14: hosts[0].address: "hv1.example": want the IP address its consoles are reached at (SPICE listens there)`,
			`F:5:14: hosts[0].labels[0]: "KVM": want lower-case letters, digits and . _ - (kvm, spice-tls, linux-guest)`,
			`F:5:24: hosts[0].labels[2]: "kvm" is listed twice`,
			`F:6:12: hosts[0].slots: is 0; want 1-1024`,
			`F:7:15: hosts[0].pool_dir: "relative/dir": want a clean absolute directory on the host`,
			`F:8:5: hosts[0].colour: unknown key; a host has name, uri, address, labels, slots, pool_dir and tls`,
		}},
		{"missing and duplicates", `hosts:
  - name: a
    uri: qemu+tcp://192.0.2.1/system
    slots: 2
    slots: 3
  - name: a
    uri: qemu:///system
    slots: "2"
`, []string{
			"F:2:5: hosts[0].address: missing: a host reached at qemu+tcp://192.0.2.1/system needs the IP address its consoles are reached at",
			"F:5:5: hosts[0].slots: is defined twice in one mapping (first at line 4)",
			`F:6:5: hosts[1].name: "a" is also the name of the host at line 2; names must be unique`,
			`F:8:12: hosts[1].slots: must be an integer (how many VMs it runs at once), got "2"`,
		}},
		{"tls without label and label without tls", `hosts:
  - name: a
    uri: qemu:///system
    slots: 1
    labels: [kvm]
    tls: {ca_cert: ca.pem, host_subject: "CN=a"}
  - name: b
    uri: qemu:///system
    slots: 1
    labels: [spice-tls]
  - name: c
    uri: qemu:///system
    slots: 1
    labels: [spice-tls]
    tls: {ca_cert: nothere.pem, subject: x}
`, []string{
			"F:5:5: hosts[0].labels: the host has a tls: block but not the spice-tls label; add it to labels",
			"F:10:5: hosts[1].labels: has spice-tls but the host has no tls: block (ca_cert, host_subject)",
			"F:15:10: hosts[2].tls.host_subject: missing",
			"F:15:20: hosts[2].tls.ca_cert: open DIR/nothere.pem: no such file or directory",
			"F:15:33: hosts[2].tls.subject: unknown key; tls has ca_cert and host_subject",
		}},
		{"password in uri", "hosts:\n  - {name: a, uri: 'qemu+ssh://u:pw@h/system', address: 192.0.2.1, slots: 1}\n",
			[]string{"F:2:20: hosts[0].uri: has a password; it would show in logs, reports and ps: use ssh keys or TLS certificates"}},
		{"alias", "hosts:\n  - &h {name: a, uri: 'qemu:///system', slots: 1}\n  - *h\n", []string{
			"F:3:5: yaml: alias *h: aliases are not allowed in a hosts file; write the value out",
			"F:3:5: hosts[1]: must be a mapping (name, uri, address, labels, slots), got an alias",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, "hosts.yaml")
			_, err := ParseHosts(file, []byte(tt.data))
			var he *HostsError
			if !errors.As(err, &he) || !errors.Is(err, ErrHostsFile) {
				t.Fatalf("unexpected error %v: want a *HostsError", err)
			}
			var got []string
			for _, p := range he.Problems {
				got = append(got, strings.ReplaceAll(strings.ReplaceAll(p.String(), file, "F"), dir, "DIR"))
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("unexpected problems (-want +got):\n%s", d)
			}
		})
	}
}

func testHosts(t *testing.T) *Hosts {
	t.Helper()
	hs, err := NewHosts([]*Host{
		{Name: "a", URI: "qemu+tcp://192.0.2.1/system", Address: "192.0.2.1", Slots: 2, Labels: []string{"kvm"}},
		{Name: "b", URI: "qemu+tcp://192.0.2.2/system", Address: "192.0.2.2", Slots: 2, Labels: []string{"kvm", "spice-tls"}},
		{Name: "c", URI: "qemu+tcp://192.0.2.3/system", Address: "192.0.2.3", Slots: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

// TestPlacement: most free slots first, ties to the first listed; labels
// and pins narrow the candidates; a lane waits for a slot and the wait's
// error says for what; a down host is skipped and named.
func TestPlacement(t *testing.T) {
	hs := testHosts(t)
	ctx := context.Background()
	take := func(p placement) string {
		t.Helper()
		l, err := hs.acquire(ctx, p)
		if err != nil {
			t.Fatalf("acquire %s: %v", p, err)
		}
		return l.host.Name
	}
	var got []string
	for range 5 {
		got = append(got, take(placement{vms: 1}))
	}
	if d := cmp.Diff([]string{"a", "b", "a", "b", "c"}, got); d != "" {
		t.Errorf("unexpected placement order (-want +got):\n%s", d)
	}

	hs = testHosts(t)
	if h := take(placement{vms: 1, labels: []string{"spice-tls"}}); h != "b" {
		t.Errorf("spice-tls lane on %s, want b", h)
	}
	if h := take(placement{vms: 1, host: "c"}); h != "c" {
		t.Errorf("pinned lane on %s, want c", h)
	}
	if h := take(placement{vms: 2}); h != "a" {
		t.Errorf("two-VM lane on %s, want a (b has one slot left)", h)
	}
	// Everything with kvm is full now: a lane waits, and gives up saying
	// why when its bound passes.
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := hs.acquire(wctx, placement{vms: 2, labels: []string{"kvm"}})
	if err == nil || !strings.Contains(err.Error(), "2 free slots on a host with labels [kvm]") || !strings.Contains(err.Error(), "a 2/2 busy, b 1/2 busy") {
		t.Errorf("unexpected wait error %v", err)
	}

	// A release wakes a waiting lane.
	hs = testHosts(t)
	l1, _ := hs.acquire(ctx, placement{vms: 2, host: "a"})
	done := make(chan string)
	go func() {
		l, err := hs.acquire(ctx, placement{vms: 1, host: "a"})
		if err != nil {
			done <- err.Error()
			return
		}
		done <- l.host.Name
	}()
	l1.release()
	l1.release() // idempotent
	if h := <-done; h != "a" {
		t.Errorf("the waiting lane got %q, want a", h)
	}

	// A down host is skipped; when it was the only candidate, the lane
	// fails at once naming it.
	hs = testHosts(t)
	hs.markDown(hs.hosts[1].Host, errors.New("connection lost"))
	if h := take(placement{vms: 1, labels: []string{"kvm"}}); h != "a" {
		t.Errorf("lane on %s with b down, want a", h)
	}
	_, err = hs.acquire(ctx, placement{vms: 1, labels: []string{"spice-tls"}})
	if err == nil || !strings.Contains(err.Error(), "every such host is down: b: connection lost") {
		t.Errorf("unexpected error %v", err)
	}

	// Impossible requests fail before any wait.
	for _, tt := range []struct {
		p    placement
		want string
	}{
		{placement{vms: 1, labels: []string{"linux-guest"}}, "needs a host with labels [linux-guest]; the hosts has none (a [kvm], b [kvm spice-tls], c [])"},
		{placement{vms: 3, labels: []string{"kvm"}}, "needs 3 slots on one host; the hosts with its labels have at most 2"},
		{placement{vms: 1, host: "z"}, "needs a host with the name z; the hosts has none"},
	} {
		if why := hs.unplaceable(tt.p); !strings.Contains(why, tt.want) {
			t.Errorf("unplaceable(%s) = %q, want it to contain %q", tt.p, why, tt.want)
		}
	}
}
