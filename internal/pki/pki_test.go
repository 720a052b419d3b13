package pki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestIssueAndHostSubject(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	const want = "C=XX,L=Testville,O=ProtoTest,CN=localhost"
	name, err := ParseSubject(want)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(name, "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if got := HostSubject(leaf.Cert); got != want {
		t.Fatalf("unexpected host subject (-want +got):\n-%s\n+%s", want, got)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"}); err != nil {
		t.Fatalf("leaf does not verify against its CA: %v", err)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "127.0.0.1"}); err != nil {
		t.Fatalf("leaf does not verify for its IP SAN: %v", err)
	}
	if _, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM); err != nil {
		t.Fatalf("PEM pair does not load: %v", err)
	}

	dir := t.TempDir()
	if err := ca.WriteQemuDir(dir, leaf); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca-cert.pem", "server-cert.pem", "server-key.pem"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("qemu x509 dir lacks %s: %v", f, err)
		}
	}

	// openssl prints the subject spice-gtk compares against; ours must match
	// it once openssl's " = " and ", " spacing is removed.
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl missing in CI: run make deps")
		}
		t.Skip("openssl missing: apt-get install openssl")
	}
	out, err := exec.Command("openssl", "x509", "-noout", "-subject", "-in", filepath.Join(dir, "server-cert.pem")).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.TrimPrefix(strings.TrimSpace(string(out)), "subject=")
	got = strings.ReplaceAll(strings.ReplaceAll(got, " = ", "="), ", ", ",")
	if got != want {
		t.Fatalf("openssl subject differs (-want +got):\n-%s\n+%s", want, got)
	}
}

func TestParseSubjectErrors(t *testing.T) {
	for _, s := range []string{"", "CN", "XX=1", "CN=a,,O=b"} {
		if _, err := ParseSubject(s); err == nil {
			t.Errorf("ParseSubject(%q) accepted", s)
		}
	}
}
