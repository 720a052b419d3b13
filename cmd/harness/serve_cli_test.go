package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
)

// TestServeStartErrors: what a person sees when serve cannot start; each
// message names the flag or variable to change.
func TestServeStartErrors(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	bad := filepath.Join(dir, "bad.yaml")
	good := filepath.Join(dir, "good.yaml")
	src := static.ExampleSources()[0]
	text := string(emitSources(t, src))
	if err := os.WriteFile(bad, []byte(strings.Replace(text, "      ticket:", "      tikcet:", 2)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(good, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(key, []byte("not a key"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		env   string // HARNESS_API_KEY
		args  []string
		code  int
		lines []string // stderr must have these, in order
	}{
		{"invalid file", "", []string{"--sources", bad}, exitFailure, []string{
			bad + ":50:7: sources[0].consoles[0].ticket: is missing (required)",
			bad + `:55:7: sources[0].consoles[0].tikcet: unknown key "tikcet"`,
			bad + ":68:7: sources[0].consoles[1].ticket: is missing (required)",
			bad + `:73:7: sources[0].consoles[1].tikcet: unknown key "tikcet"`,
			"harness: " + bad + " has 4 errors; fix them (harness validate " + bad + " lists them too) or start with --allow-errors",
		}},
		{"missing file", "", []string{"--sources", filepath.Join(dir, "nope.yaml")}, exitUsage, []string{
			"harness: --sources " + filepath.Join(dir, "nope.yaml") + ": cannot be read: no such file or directory"}},
		{"API on all addresses without a key", "", []string{"--sources", good, "--api", "0.0.0.0:0"}, exitUsage, []string{
			"harness: --api 0.0.0.0:0 accepts connections from other machines, and every .vv it serves carries a ticket or token: " +
				"set HARNESS_API_KEY (clients then send \"Authorization: Bearer <key>\"), or listen on 127.0.0.1 (see harness --help)"}},
		{"API key with a space", "a b", []string{"--sources", good}, exitUsage, []string{"harness: HARNESS_API_KEY contains white space"}},
		{"key file open to others", "", []string{"--sources", good, "--tls-cert", good, "--tls-key", key}, exitFailure, []string{
			"harness: --tls-key " + key + " is a private key open to group or others (mode 0644); make it readable by its owner only: chmod 600 " + key}},
		{"negative poll", "", []string{"--sources", good, "--poll", "-1s"}, exitUsage, []string{"harness: --poll -1s is negative"}},
		{"negative token lifetime", "", []string{"--sources", good, "--token-ttl", "-5s"}, exitUsage, []string{"harness: --token-ttl -5s is negative"}},
		{"CA without a certificate", "", []string{"--sources", good, "--ca", good}, exitUsage, []string{
			"harness: --ca is the CA that signed --tls-cert; give --tls-cert and --tls-key too"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvAPIKey, tt.env)
			args := append([]string{"serve", "--state-dir", state}, tt.args...)
			stdout, stderr, code := runCLI(t, "", args...)
			if code != tt.code || stdout != "" {
				t.Errorf("harness %s: exit %d, stdout %q; want exit %d, no stdout\nstderr:\n%s", strings.Join(args, " "), code, stdout, tt.code, stderr)
			}
			rest := stderr
			for _, l := range tt.lines {
				i := strings.Index(rest, l)
				if i < 0 {
					t.Errorf("unexpected stderr: no %q after the lines before it in:\n%s", l, stderr)
					break
				}
				rest = rest[i+len(l):]
			}
			if strings.Contains(stderr, "Config.") {
				t.Errorf("stderr names a Go field:\n%s", stderr)
			}
		})
	}
}

// TestIntegrationServeCertificates: the generated CA survives a restart
// (so a .vv from before still matches), --allow-errors starts on a
// broken file, and an own certificate gives the .vv its subject.
func TestIntegrationServeCertificates(t *testing.T) {
	testenv.Short(t)
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	path := filepath.Join(dir, "sources.yaml")
	src := static.ExampleSources()[0]
	if err := os.WriteFile(path, []byte(strings.Replace(string(emitSources(t, src)), "      ticket:", "      tikcet:", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	fetch := func(h *started, k static.Key) *vv.File {
		t.Helper()
		a := serveAPI{t: t, base: h.ready.API}
		code, body := a.do("GET", "/console/proxy/"+k.Source+"/"+k.UUID+"/console.vv", false)
		f, err := vv.Parse(body)
		if code != 200 || err != nil {
			t.Fatalf("proxy .vv of %s: %d %v %s", k, code, err, body)
		}
		return f
	}
	k := static.Key{Source: src.Name, UUID: src.Consoles[1].UUID}

	h := startHarness(t, "serve", "--sources", path, "--json", "--state-dir", state, "--allow-errors")
	if len(h.ready.Consoles) != 0 || !strings.Contains(h.stderr.String(), "result=partial") {
		t.Errorf("--allow-errors on a never-good source: ready %+v; want no consoles and a partial reload", h.ready)
	}
	renameOver(t, path, emitSources(t, src))
	serveAPI{t: t, base: h.ready.API}.waitReload(1, "ok", "the fix")
	vv1 := fetch(h, k)
	ca1, err := os.ReadFile(h.ready.Proxy.CAFile)
	if err != nil || h.ready.Proxy.CAFile != filepath.Join(state, "proxy-ca.pem") || !bytes.Equal(ca1, []byte(vv1.CA)) {
		t.Fatalf("ca_file %s (%v) is not the state dir's CA the .vv embeds", h.ready.Proxy.CAFile, err)
	}
	if code := h.stop(t); code != 0 {
		t.Fatalf("serve exited %d", code)
	}

	h = startHarness(t, "serve", "--sources", path, "--json", "--state-dir", state)
	if vv2 := fetch(h, k); vv2.CA != vv1.CA || vv2.HostSubject != vv1.HostSubject || vv1.HostSubject == "" {
		t.Errorf("after a restart the .vv has another CA or host-subject (%q, was %q)", vv2.HostSubject, vv1.HostSubject)
	}
	h.stop(t)

	ca, err := pki.NewCA("own CA")
	if err != nil {
		t.Fatal(err)
	}
	subject, err := pki.ParseSubject("C=XX,O=Example,CN=spice.example.com")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(subject, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	for f, data := range map[string][]byte{cert: leaf.CertPEM, key: leaf.KeyPEM, caFile: ca.CertPEM} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h = startHarness(t, "serve", "--sources", path, "--json", "--state-dir", state, "--tls-cert", cert, "--tls-key", key, "--ca", caFile)
	if f := fetch(h, k); f.HostSubject != "C=XX,O=Example,CN=spice.example.com" || f.CA != string(ca.CertPEM) || h.ready.Proxy.CAFile != caFile {
		t.Errorf("own certificate: .vv host-subject %q, ca_file %q", f.HostSubject, h.ready.Proxy.CAFile)
	}
	if code := h.stop(t); code != 0 {
		t.Fatalf("serve exited %d", code)
	}
}
