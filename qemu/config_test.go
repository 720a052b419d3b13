package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigPrecedence(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		opts      []Option
		wantBin   string
		wantAccel Accelerator
		wantRoot  string
	}{
		{"defaults", nil, nil, "", AccelAuto, os.TempDir()},
		{"env", map[string]string{EnvQemu: "/opt/qemu", EnvAccel: "KVM", EnvStateDir: "/run/sh"}, nil, "/opt/qemu", AccelKVM, "/run/sh"},
		{"option beats env", map[string]string{EnvQemu: "/opt/qemu", EnvAccel: "kvm", EnvStateDir: "/run/sh"},
			[]Option{Binary("/usr/local/bin/qemu"), Accel(AccelTCG), StateRoot("/x")}, "/usr/local/bin/qemu", AccelTCG, "/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{EnvQemu, EnvAccel, EnvStateDir} {
				t.Setenv(k, tt.env[k])
			}
			c, err := newConfig(tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			got := []any{c.binary, c.accel, c.stateRoot}
			want := []any{tt.wantBin, tt.wantAccel, tt.wantRoot}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("unexpected binary, accel, state root (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv(EnvAccel, "fast")
	_, err := newConfig(Memory(1), Name("no spaces"), UUID("X"), SPICEPort(70000), VGA("cga"), Libvirt("http://x"), Env("NOEQUALS"), Disk("/no/such/file"), SPICEAddr("localhost"), TLSNames("ok.example", "*.ok", "::1", "bad_name"), TLSNames("-x.example"))
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("unexpected error: %v", err)
	}
	var fields []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *ConfigError
		if !errors.As(e, &ce) {
			t.Fatalf("not a *ConfigError: %v", e)
		}
		fields = append(fields, ce.Field)
	}
	want := []string{EnvAccel, "Memory", "Name", "UUID", "SPICEPort", "VGA", "Libvirt", "Env", "Disk", "SPICEAddr", "TLSNames", "TLSNames"}
	if diff := cmp.Diff(want, fields); diff != "" {
		t.Errorf("unexpected rejected fields (-want +got):\n%s", diff)
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv(EnvAccel, "")
	c, err := newConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !uuidRE.MatchString(c.uuid) || c.uuid[14] != '4' {
		t.Errorf("default UUID %q is not a v4 UUID", c.uuid)
	}
	if want := "sh-" + c.uuid[:8]; c.name != want {
		t.Errorf("unexpected default name (-want +got):\n%s", cmp.Diff(want, c.name))
	}
	if acc, _ := c.resolveAccel(); acc != AccelTCG {
		t.Errorf("auto must pick tcg for the built-in guest, got %s", acc)
	}
}

func TestParseLibvirtURI(t *testing.T) {
	tests := []struct{ in, want string }{
		{"qemu:///system", "qemu:///system"},
		{"qemu+tcp://127.0.0.1:16509/system", "qemu+tcp://127.0.0.1:16509/system"},
		{"qemu+tcp://127.0.0.1", "qemu+tcp://127.0.0.1/system"},
		{"tcp://127.0.0.1:16509", "qemu+tcp://127.0.0.1:16509/system"},
		{"unix:///var/run/libvirt/libvirt-sock", "qemu+unix:///system?socket=%2Fvar%2Frun%2Flibvirt%2Flibvirt-sock"},
		{"qemu://host/system", "qemu+tls://host/system"},
		{"qemu+tls://198.18.0.2/system?pkipath=%2Fetc%2Fpki", "qemu+tls://198.18.0.2/system?pkipath=%2Fetc%2Fpki"},
		{"qemu+ssh://root@hv1.example:2222/system", "qemu+ssh://root@hv1.example:2222/system"},
		{"qemu+ssh://root:secret@hv1/system", ""},
		{"qemu+tcp:///system", ""},
		{"tcp://", ""},
		{"ssh://x", ""},
		{"", ""},
	}
	for _, tt := range tests {
		u, err := parseLibvirtURI(tt.in)
		got := ""
		if err == nil {
			got = u.String()
		}
		if got != tt.want {
			t.Errorf("parseLibvirtURI(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestTicket(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9]{32}$`)
	seen := map[string]bool{}
	for range 1000 {
		tk := newTicket()
		if !re.MatchString(tk) {
			t.Fatalf("unexpected ticket %q", tk)
		}
		if seen[tk] {
			t.Fatalf("ticket repeated")
		}
		seen[tk] = true
	}
	if TicketLen > 59 {
		t.Fatal("tickets over 59 bytes never match in spice-server")
	}
}

func TestExitErrorMessage(t *testing.T) {
	e := &ExitError{VM: "qemu vm1 (pid 7)", Status: "exit status 1", Code: 1, Argv: []string{"qemu", "-bogus"},
		Log: "qemu: -bogus: invalid option\n"}
	want := "qemu: qemu vm1 (pid 7) exited unexpectedly (exit status 1)\n" +
		"  command: qemu -bogus\n" +
		"  qemu log (tail):\n" +
		"    | qemu: -bogus: invalid option\n" +
		"  serial log: (empty)"
	if diff := cmp.Diff(want, e.Error()); diff != "" {
		t.Errorf("unexpected message (-want +got):\n%s", diff)
	}
	if !errors.Is(e, ErrExited) || errors.Is(e, ErrBind) {
		t.Error("ExitError sentinel matching is wrong")
	}
}

func TestRedact(t *testing.T) {
	secret := "s3cr3tTicket"
	qe := &QMPError{Command: "set_password", Class: "GenericError", Desc: "bad " + secret}
	err := redact(qe, secret)
	var got *QMPError
	if !errors.As(err, &got) || strings.Contains(err.Error(), secret) || got.Class != "GenericError" {
		t.Errorf("redacted QMP error: %v", err)
	}
	err = redact(errors.Join(ErrExited, errors.New("x "+secret)), secret)
	if strings.Contains(err.Error(), secret) || !errors.Is(err, ErrExited) {
		t.Errorf("redacted error: %v", err)
	}
	plain := errors.New("nothing to hide")
	if redact(plain, secret) != plain {
		t.Error("redact changed an error without the secret")
	}
}

func TestSweepStateDirs(t *testing.T) {
	root := t.TempDir()
	mk := func(name, owner string) string {
		d := filepath.Join(root, name)
		os.Mkdir(d, 0o700)
		if owner != "" {
			os.WriteFile(filepath.Join(d, ownerName), []byte(owner), 0o644)
		}
		return d
	}
	live := mk("sh-live", ownerRecord(os.Getpid()))
	reused := mk("sh-reused", strings.Fields(ownerRecord(os.Getpid()))[0]+" 1\n") // same pid, other start time
	dead := mk("sh-dead", "999999999 1\n")
	fresh := mk("sh-noowner", "")
	other := mk("other", "999999999 1\n")
	removed, err := SweepStateDirs(root)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{dead, reused}, removed); diff != "" {
		t.Errorf("unexpected removed dirs (-want +got):\n%s", diff)
	}
	for _, d := range []string{live, fresh, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed", d)
		}
	}
}
