package qemu_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/fixtures/guest"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/qemu"
)

// The libvirtd of the test lane (scripts/services.sh): unix socket and
// TCP on loopback, auth none.
var libvirtTransports = []struct{ name, uri string }{
	{"unix", "qemu:///system"},
	{"tcp", "tcp://127.0.0.1:16509"},
}

func needLibvirt(t testing.TB) {
	t.Helper()
	needQemu(t)
	testenv.NeedCommand(t, "libvirtd", "libvirt-daemon")
	for _, addr := range [][2]string{{"unix", "/var/run/libvirt/libvirt-sock"}, {"tcp", "127.0.0.1:16509"}} {
		c, err := net.DialTimeout(addr[0], addr[1], time.Second)
		if err != nil {
			testenv.Missing(t, "libvirtd on "+addr[1], "run `make services` (scripts/services.sh) as root")
		}
		c.Close()
	}
	if why := kvmUnusableByLibvirt(); why != "" {
		// libvirt 9 then re-probes qemu on every domain lookup: a domain
		// takes over a minute to start and every test here times out.
		testenv.Missing(t, "a /dev/kvm libvirt-qemu can use ("+why+")",
			"chmod 0666 /dev/kvm as Debian's udev rule does (scripts/services.sh)")
	}
}

// kvmUnusableByLibvirt says why libvirt's qemu user cannot open
// /dev/kvm read-write, or "" when it can (or there is no /dev/kvm).
func kvmUnusableByLibvirt() string {
	fi, err := os.Stat("/dev/kvm")
	if err != nil {
		return ""
	}
	mode := fi.Mode().Perm()
	if mode&0o006 == 0o006 {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	u, err := user.Lookup("libvirt-qemu")
	if ok && err == nil {
		gids, _ := u.GroupIds()
		if u.Uid == strconv.Itoa(int(st.Uid)) && mode&0o600 == 0o600 ||
			slices.Contains(gids, strconv.Itoa(int(st.Gid))) && mode&0o060 == 0o060 {
			return ""
		}
	}
	return fmt.Sprintf("mode %v", mode)
}

func startDomain(t testing.TB, uri string, opts ...qemu.Option) qemu.VM {
	t.Helper()
	needLibvirt(t)
	return startVM(t, append([]qemu.Option{qemu.Libvirt(uri)}, opts...)...)
}

func TestIntegrationLibvirt(t *testing.T) {
	for _, tr := range libvirtTransports {
		t.Run(tr.name, func(t *testing.T) {
			vm := startDomain(t, tr.uri)
			ctx := ctxT(t, 60*time.Second)
			if _, ok := vm.(*qemu.Domain); !ok {
				t.Fatalf("Start with Libvirt returned %T", vm)
			}
			con := vm.Endpoint()
			if con.Port == 0 || con.Ticket != "" || con.UUID == "" || con.Host == "" {
				t.Fatalf("unexpected console %+v", con)
			}
			if err := vm.WaitSPICE(ctx); err != nil {
				t.Fatal(err)
			}
			tickets := checkTickets(t, vm)
			// libvirt's domain log must not hold them either.
			if log, err := os.ReadFile("/var/log/libvirt/qemu/" + vm.(*qemu.Domain).DomainName() + ".log"); err == nil {
				for _, tk := range tickets {
					if strings.Contains(string(log), tk) {
						t.Error("ticket in libvirt's domain log")
					}
				}
			}

			if err := vm.WaitFor(ctx, qemu.ForGuestPrompt()); err != nil {
				t.Fatal(err)
			}
			if err := vm.SendKeys(ctx, "shift-o", "k", "ret"); err != nil {
				t.Fatal(err)
			}
			if err := vm.WaitSerial(ctx, regexp.MustCompile(regexp.QuoteMeta(guest.Prompt+"Ok\r\n"))); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(vm.SerialLog())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(guest.Ready+"Ok\r\n", string(got)); diff != "" {
				t.Errorf("unexpected serial log (-want +got):\n%s", diff)
			}
			if err := vm.WaitFor(ctx, qemu.ForEvent(qemu.EventSPICEInitialized)); err != nil {
				t.Errorf("SPICE events did not come through libvirt: %v", err)
			}
			_, err = vm.Run(ctx, "no-such-command")
			var qe *qemu.QMPError
			if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
				t.Errorf("QMP error class lost through libvirt: %v", err)
			}
			for _, tk := range tickets {
				if strings.Contains(err.Error(), tk) {
					t.Error("ticket leaked into an error")
				}
			}
		})
	}
}

func TestIntegrationLibvirtKill(t *testing.T) {
	vm := startDomain(t, "qemu:///system")
	ctx := ctxT(t, 60*time.Second)
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := vm.Wait(ctx); err != nil {
		t.Errorf("Wait after Kill: %v", err)
	}
	if _, err := vm.QuerySpice(ctx); !errors.Is(err, qemu.ErrExited) {
		t.Errorf("call after Kill: want ErrExited, got %v", err)
	}
}

func TestIntegrationLibvirtUnexpectedExit(t *testing.T) {
	needLibvirt(t)
	ctx := ctxT(t, 60*time.Second)
	vm, err := qemu.Start(ctx, qemu.Libvirt("qemu:///system"), qemu.Accel(qemu.AccelTCG), qemu.Logger(testLogger(t)))
	defer vm.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.WaitFor(ctx, qemu.ForGuestPrompt()); err != nil {
		t.Fatal(err)
	}
	// Destroy it behind the VM's back.
	name := vm.(*qemu.Domain).DomainName()
	destroyDomain(t, name)
	err = vm.WaitSerial(ctx, regexp.MustCompile("never printed"))
	var ee *qemu.ExitError
	if !errors.As(err, &ee) || ee.Expected || !strings.Contains(ee.Status, "destroyed") {
		t.Fatalf("want an unexpected *ExitError for a destroyed domain, got %v", err)
	}
	if !strings.Contains(ee.Serial, guest.Prompt) {
		t.Errorf("ExitError lacks the serial tail:\n%v", ee)
	}
	if err := vm.Close(); !errors.As(err, &ee) {
		t.Errorf("Close after an unexpected exit: want the ExitError, got %v", err)
	}
}

// destroyDomain destroys a domain with virsh, as an outsider would.
func destroyDomain(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := execOutput(ctx, "virsh", "-c", "qemu:///system", "destroy", name)
	if err != nil {
		t.Fatalf("virsh destroy %s: %v\n%s", name, err, out)
	}
}

func TestIntegrationLibvirtBadOption(t *testing.T) {
	needLibvirt(t)
	ctx := ctxT(t, 60*time.Second)
	vm, err := qemu.Start(ctx, qemu.Libvirt("qemu:///system"), qemu.Accel(qemu.AccelTCG), qemu.ExtraArgs("-no-such-option"))
	if cerr := vm.Close(); cerr != nil {
		t.Errorf("Close after a failed Start: %v", cerr)
	}
	var ee *qemu.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("Start error is not an *ExitError: %v", err)
	}
	// libvirt's status carries qemu's own complaint, naming the option.
	if !strings.Contains(ee.Status, "-no-such-option") {
		t.Errorf("ExitError.Status does not carry qemu's complaint: %q", ee.Status)
	}
	select {
	case <-vm.Exited():
	default:
		t.Error("Exited() not closed after a failed Start")
	}
}

// TestLibvirtTLSUnsupported: TLS on the libvirt backend is refused
// before libvirtd is dialled, as both an invalid configuration and an
// unsupported one.
func TestLibvirtTLSUnsupported(t *testing.T) {
	ca, err := qemu.NewCA("x")
	if err != nil {
		t.Fatal(err)
	}
	for name, opt := range map[string]qemu.Option{"TLS": qemu.TLS(ca), "TLSPort": qemu.TLSPort(5999)} {
		vm, err := qemu.Start(ctxT(t, 30*time.Second), qemu.Libvirt("qemu+unix:///system?socket=/nonexistent"), opt)
		if cerr := vm.Close(); cerr != nil {
			t.Errorf("%s: Close after a refused Start: %v", name, cerr)
		}
		if !errors.Is(err, qemu.ErrUnsupported) || !errors.Is(err, qemu.ErrInvalidConfig) {
			t.Errorf("%s on libvirt: want ErrUnsupported and ErrInvalidConfig, got %v", name, err)
		}
	}
}
