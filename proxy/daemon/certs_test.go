package daemon_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/daemon"
	"github.com/spiceharness/spiceharness/static"
)

// cliNames are the names `harness serve` gives the settings.
var cliNames = map[daemon.Setting]string{
	daemon.SettingAPIKey: "HARNESS_API_KEY", daemon.SettingAPIAddr: "--api", daemon.SettingTLSCert: "--tls-cert",
	daemon.SettingTLSKey: "--tls-key", daemon.SettingCA: "--ca", daemon.SettingStateDir: "--state-dir",
	daemon.SettingPlainAddr: "--listen", daemon.SettingTLSAddr: "--tls-listen",
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	must(t, err)
	return st.Mode().Perm()
}

// TestStateDir: the generated CA and certificate are kept, private, and
// reused by the next start, so a .vv from before a restart still works.
func TestStateDir(t *testing.T) {
	ctx := ctxT(t, 60e9)
	a := backend(t, "ticket-a")
	lab := static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{consoleOf("a1", a)}}
	dir := filepath.Join(t.TempDir(), "state")
	start := func() *daemon.Daemon {
		d, err := daemon.New(daemon.Config{StateDir: dir, Names: cliNames})
		must(t, err)
		must(t, d.Start(ctx))
		d.Load(lab)
		return d
	}
	d1 := start()
	ca1, subject1 := d1.CAPEM(), d1.Proxy().HostSubject()
	_, _, vv1 := connect(t, ctx, d1, static.Key{Source: "lab", UUID: "a1"}, "")
	must(t, d1.Close())
	if d1.CAFile() != filepath.Join(dir, daemon.StateCAFile) {
		t.Errorf("CAFile %q, want the state dir's", d1.CAFile())
	}
	want := map[string]os.FileMode{".": 0o700, daemon.StateCAKey: 0o600, daemon.StateKeyFile: 0o600, daemon.StateCAFile: 0o644, daemon.StateCertFile: 0o644}
	got := map[string]os.FileMode{}
	for name := range want {
		got[name] = mode(t, filepath.Join(dir, name))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unexpected state dir modes (-want +got):\n%s", diff)
	}

	d2 := start()
	defer d2.Close()
	if !bytes.Equal(d2.CAPEM(), ca1) || d2.Proxy().HostSubject() != subject1 || subject1 == "" {
		t.Errorf("the restarted daemon has another CA or subject (%q, was %q)", d2.Proxy().HostSubject(), subject1)
	}
	// The .vv of the first run still describes the second.
	_, _, vv2 := connect(t, ctx, d2, static.Key{Source: "lab", UUID: "a1"}, "")
	if vv1.CA != vv2.CA || vv1.HostSubject != vv2.HostSubject {
		t.Errorf("a .vv from before the restart no longer matches the proxy")
	}
	must(t, d2.Close())

	// A key others can read, or a state dir others can open, is refused
	// with the fix.
	key := filepath.Join(dir, daemon.StateCAKey)
	must(t, os.Chmod(key, 0o644))
	d3, err := daemon.New(daemon.Config{StateDir: dir, Names: cliNames})
	must(t, err)
	err = d3.Start(ctx)
	d3.Close()
	if !errors.Is(err, daemon.ErrKeyPermissions) || !strings.Contains(err.Error(), "--state-dir") || !strings.Contains(err.Error(), "chmod 600 "+key) {
		t.Errorf("Start with a 0644 CA key: %v, want ErrKeyPermissions naming --state-dir and chmod 600", err)
	}
	must(t, os.Chmod(key, 0o600))
	must(t, os.Chmod(dir, 0o775))
	d4, err := daemon.New(daemon.Config{StateDir: dir, Names: cliNames})
	must(t, err)
	err = d4.Start(ctx)
	d4.Close()
	if !errors.Is(err, daemon.ErrKeyPermissions) || !strings.Contains(err.Error(), "group or others may write to it (mode 0775)") ||
		!strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Errorf("Start with a 0775 state dir: %v, want ErrKeyPermissions and chmod 700", err)
	}
	// A directory others may only list is fine: the keys in it are 0600.
	must(t, os.Chmod(dir, 0o755))
	d5, err := daemon.New(daemon.Config{StateDir: dir})
	must(t, err)
	must(t, d5.Start(ctx))
	must(t, d5.Close())
}

// TestOwnCertificate: --tls-cert, --tls-key and --ca are served, the .vv
// host-subject is the certificate's, and mistakes are refused with
// messages naming the flags.
func TestOwnCertificate(t *testing.T) {
	ctx := ctxT(t, 60e9)
	a := backend(t, "ticket-a")
	lab := static.Source{Name: "lab", Type: static.TypeStatic, Consoles: []static.Console{consoleOf("a1", a)}}
	dir := t.TempDir()
	ca, err := pki.NewCA("test CA")
	must(t, err)
	subject, err := pki.ParseSubject("C=XX,O=Example,CN=proxy.example.com")
	must(t, err)
	leaf, err := ca.Issue(subject, "localhost", "127.0.0.1")
	must(t, err)
	certFile, keyFile, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	must(t, os.WriteFile(certFile, leaf.CertPEM, 0o644))
	must(t, os.WriteFile(keyFile, leaf.KeyPEM, 0o600))
	must(t, os.WriteFile(caFile, ca.CertPEM, 0o644))

	d, err := daemon.New(daemon.Config{TLSCertFile: certFile, TLSKeyFile: keyFile, CAFile: caFile, StateDir: filepath.Join(dir, "unused"), Names: cliNames})
	must(t, err)
	defer d.Close()
	must(t, d.Start(ctx))
	d.Load(lab)
	s, in, f := connect(t, ctx, d, static.Key{Source: "lab", UUID: "a1"}, "")
	relays(t, "own certificate", s, in, a, 0x10)
	if f.HostSubject != "C=XX,O=Example,CN=proxy.example.com" || f.CA != string(ca.CertPEM) || d.CAFile() != caFile {
		t.Errorf("unexpected .vv for an own certificate: host-subject %q, ca %q (CAFile %q)", f.HostSubject, f.CA, d.CAFile())
	}
	if _, err := os.Stat(filepath.Join(dir, "unused")); !os.IsNotExist(err) {
		t.Errorf("the state dir was used although --tls-cert was given: %v", err)
	}
	s.Close()
	must(t, d.Close())

	other, err := pki.NewCA("another CA")
	must(t, err)
	otherFile := filepath.Join(dir, "other-ca.pem")
	must(t, os.WriteFile(otherFile, other.CertPEM, 0o644))
	for _, tt := range []struct {
		name     string
		keyMode  os.FileMode
		cfg      daemon.Config
		sentinel error
		want     []string
	}{
		{"key readable by the group", 0o640, daemon.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, daemon.ErrKeyPermissions,
			[]string{"--tls-key " + keyFile, "mode 0640", "chmod 600 " + keyFile}},
		{"key readable by all", 0o604, daemon.Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, daemon.ErrKeyPermissions,
			[]string{"--tls-key", "chmod 600"}},
		{"CA that did not sign the certificate", 0o600, daemon.Config{TLSCertFile: certFile, TLSKeyFile: keyFile, CAFile: otherFile}, daemon.ErrConfig,
			[]string{"--tls-cert " + certFile + " does not verify against --ca " + otherFile}},
		{"key of another certificate", 0o600, daemon.Config{TLSCertFile: otherFile, TLSKeyFile: keyFile}, daemon.ErrConfig,
			[]string{"--tls-cert " + otherFile + " with --tls-key " + keyFile}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			must(t, os.Chmod(keyFile, tt.keyMode))
			tt.cfg.Names = cliNames
			d, err := daemon.New(tt.cfg)
			must(t, err)
			err = d.Start(ctx)
			d.Close()
			if !errors.Is(err, tt.sentinel) {
				t.Errorf("Start: %v, want %v", err, tt.sentinel)
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Start: %v, want it to say %q", err, w)
				}
			}
		})
	}
}

// TestConfigErrors: each mistake names what a CLI user sets.
func TestConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name     string
		cfg      daemon.Config
		sentinel error
		want     string
	}{
		{"API on all addresses without a key", daemon.Config{APIAddr: "0.0.0.0:8080"}, daemon.ErrInsecureAPI,
			"--api 0.0.0.0:8080 accepts connections from other machines, and every .vv it serves carries a ticket or token: set HARNESS_API_KEY"},
		{"API on another IP without a key", daemon.Config{APIAddr: "192.0.2.1:8080"}, api.ErrInsecureListen, "set HARNESS_API_KEY"},
		{"API without a host", daemon.Config{APIAddr: ":8080"}, daemon.ErrInsecureAPI, "set HARNESS_API_KEY"},
		{"key with a space", daemon.Config{APIKey: "a b"}, daemon.ErrConfig, "HARNESS_API_KEY contains white space"},
		{"cert without key", daemon.Config{TLSCertFile: "c.pem"}, daemon.ErrConfig, "--tls-cert and --tls-key go together"},
		{"CA alone", daemon.Config{CAFile: "ca.pem"}, daemon.ErrConfig, "--ca is the CA that signed --tls-cert; give --tls-cert and --tls-key too"},
		{"bad listen address", daemon.Config{PlainAddr: "5900"}, daemon.ErrConfig, `--listen "5900" is not HOST:PORT`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Names = cliNames
			_, err := daemon.New(tt.cfg)
			if !errors.Is(err, tt.sentinel) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want %v saying %q", err, tt.sentinel, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "Config.") {
				t.Errorf("New: %v names a Go field", err)
			}
		})
	}
	// A port in use names its flag.
	ctx := ctxT(t, 30e9)
	d1, err := daemon.New(daemon.Config{})
	must(t, err)
	must(t, d1.Start(ctx))
	defer d1.Close()
	d2, err := daemon.New(daemon.Config{TLSAddr: d1.Proxy().TLSAddr().String(), Names: cliNames})
	must(t, err)
	err = d2.Start(ctx)
	d2.Close()
	if !errors.Is(err, daemon.ErrConfig) || !strings.Contains(err.Error(), "--tls-listen "+d1.Proxy().TLSAddr().String()+": address already in use") {
		t.Errorf("Start on a TLS port in use: %v", err)
	}
}
