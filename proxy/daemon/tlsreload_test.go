package daemon_test

import (
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/daemon"
	"github.com/spiceharness/spiceharness/static"
)

// TestReloadCertificate: POST /reload re-reads --tls-cert, --tls-key and
// --ca; a rotated certificate is served to new connections and named by
// new .vv files while an open session keeps relaying; rotated files that
// fail a check are refused naming the flag, and the served certificate
// is kept.
func TestReloadCertificate(t *testing.T) {
	ctx := ctxT(t, 60e9)
	a := backend(t, "ticket-a")
	lab := static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{consoleOf("a1", a)}}
	k := static.Key{Source: "lab", UUID: "a1"}
	dir := t.TempDir()
	sources := filepath.Join(dir, "sources.yaml")
	must(t, os.WriteFile(sources, emit(t, lab), 0o644))
	certFile, keyFile, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	install := func(cn string) (*pki.CA, *x509.Certificate) {
		t.Helper()
		ca, err := pki.NewCA(cn + " CA")
		must(t, err)
		subject, err := pki.ParseSubject("O=Example,CN=" + cn)
		must(t, err)
		leaf, err := ca.Issue(subject, "localhost", "127.0.0.1")
		must(t, err)
		// Written as a rotation tool would: new files renamed over.
		for _, f := range []struct {
			path string
			data []byte
			mode os.FileMode
		}{{certFile, leaf.CertPEM, 0o644}, {keyFile, leaf.KeyPEM, 0o600}, {caFile, ca.CertPEM, 0o644}} {
			tmp := f.path + ".new"
			must(t, os.WriteFile(tmp, f.data, f.mode))
			must(t, os.Rename(tmp, f.path))
		}
		return ca, leaf.Cert
	}
	caA, _ := install("a.example")
	d, err := daemon.New(daemon.Config{Sources: sources, TLSCertFile: certFile, TLSKeyFile: keyFile, CAFile: caFile, Names: cliNames})
	must(t, err)
	defer d.Close()
	must(t, d.Start(ctx))
	live, liveIn, f := connect(t, ctx, d, k, "")
	if f.HostSubject != "O=Example,CN=a.example" || f.CA != string(caA.CertPEM) {
		t.Fatalf("unexpected .vv before the rotation: host-subject %q", f.HostSubject)
	}
	reload := func(want string) api.TLSReloadReport {
		t.Helper()
		code, body := get(t, d, "POST", "/reload", "")
		var rep api.ReloadReport
		if err := json.Unmarshal(body, &rep); code != 200 || err != nil || rep.TLS == nil {
			t.Fatalf("POST /reload: %d %s (%v): want 200 with a tls report", code, body, err)
		}
		if rep.TLS.Result != want {
			t.Fatalf("certificate reload %q, want %q: %+v", rep.TLS.Result, want, *rep.TLS)
		}
		return *rep.TLS
	}
	reload(daemon.TLSUnchanged)

	caB, leafB := install("b.example")
	rep := reload(daemon.TLSReloaded)
	if rep.HostSubject != "O=Example,CN=b.example" || !rep.Expires.Equal(leafB.NotAfter) || rep.Origin != "files" {
		t.Errorf("unexpected report of the rotation: %+v", rep)
	}
	relays(t, "the session opened before the rotation", live, liveIn, a, 0x11)
	s, in, g := connect(t, ctx, d, k, "") // verifies the handshake against the .vv's ca and subject
	relays(t, "a session after the rotation", s, in, a, 0x12)
	if g.HostSubject != "O=Example,CN=b.example" || g.CA != string(caB.CertPEM) {
		t.Errorf("unexpected .vv after the rotation: host-subject %q, ca of %s", g.HostSubject, map[bool]string{true: "B", false: "not B"}[g.CA == string(caB.CertPEM)])
	}
	if got := metric(t, d, "spice_proxy_tls_reload_total", "result", daemon.TLSReloaded); got != 1 {
		t.Errorf("spice_proxy_tls_reload_total{result=reloaded} = %v, want 1", got)
	}
	if got := metric(t, d, "spice_proxy_tls_certificate_expiry_timestamp_seconds"); got != float64(leafB.NotAfter.Unix()) {
		t.Errorf("expiry gauge %v, want %v", got, leafB.NotAfter.Unix())
	}

	// A rotation that left the key readable by others is refused.
	install("c.example")
	must(t, os.Chmod(keyFile, 0o644))
	rep = reload(daemon.TLSRefused)
	for _, w := range []string{"--tls-key " + keyFile, "chmod 600"} {
		if !strings.Contains(rep.Error, w) {
			t.Errorf("refusal %q does not say %q", rep.Error, w)
		}
	}
	if rep.HostSubject != "O=Example,CN=b.example" {
		t.Errorf("after a refused reload the report names %q, want the served b.example", rep.HostSubject)
	}
	s2, in2, h := connect(t, ctx, d, k, "")
	relays(t, "a session after the refused reload", s2, in2, a, 0x13)
	if h.HostSubject != "O=Example,CN=b.example" {
		t.Errorf("a refused reload changed the .vv: host-subject %q", h.HostSubject)
	}
	must(t, os.Chmod(keyFile, 0o600))
	if rep := reload(daemon.TLSReloaded); rep.HostSubject != "O=Example,CN=c.example" {
		t.Errorf("after fixing the key's mode: %+v", rep)
	}
}
