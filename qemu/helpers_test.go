package qemu_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
)

// startTimeout bounds one Start in tests (generous: the machine is
// shared and small).
const startTimeout = 60 * time.Second

func needQemu(t testing.TB) {
	t.Helper()
	testenv.Short(t)
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
}

// tlog routes a VM's log to t.Logf.
type tlog struct{ t testing.TB }

func (w tlog) Write(b []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(b, "\n"))
	return len(b), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startVM starts a small TCG VM with the built-in guest and closes it
// when the test ends, failing the test if qemu died unexpectedly.
func startVM(t testing.TB, opts ...qemu.Option) qemu.VM {
	t.Helper()
	needQemu(t)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	all := append([]qemu.Option{qemu.Accel(qemu.AccelTCG), qemu.Logger(testLogger(t))}, opts...)
	vm, err := qemu.Start(ctx, all...)
	if d, ok := vm.(*qemu.Domain); ok && d.DomainName() != "" {
		startedDomains.Store(d.DomainName(), true)
	}
	t.Cleanup(func() {
		if err := vm.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return vm
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// spiceLogin connects with spicy-screenshot (spice-gtk: main and display
// channels, DISPLAY_INIT sent, so it never trips the display-channel
// crash) and reports whether the ticket was accepted. It tells "auth
// refused" (main channel event 23, what spice-gtk reports for link result
// 7) from other failures, which fail the test.
//
// The ticket goes on spicy-screenshot's command line, visible in ps:
// acceptable in tests only, where tickets are throwaway values.
func spiceLogin(t testing.TB, host string, port int, ticket string) bool {
	t.Helper()
	testenv.NeedCommand(t, "spicy-screenshot", "spice-client-gtk")
	out := filepath.Join(t.TempDir(), "shot.ppm")
	args := []string{"-h", host, "-p", strconv.Itoa(port), "-o", out}
	if ticket != "" {
		args = append(args, "-w", ticket)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "spicy-screenshot", args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	if err == nil {
		return true
	}
	if strings.Contains(stderr.String(), "main channel event: 23") {
		return false
	}
	t.Fatalf("spicy-screenshot on %s:%d: %v\n%s", host, port, err, stderr.String())
	return false
}

func execOutput(ctx context.Context, name string, args ...string) (string, error) {
	b, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(b), err
}

// linkCode links a main channel with the Go SPICE client (proxy/spice)
// and returns the link result: spice.LinkOK (0) or the server's code,
// e.g. spice.ErrPermissionDenied (7). Only a main channel is opened and
// closed: closing a display channel before DISPLAY_INIT would crash qemu.
func linkCode(t testing.TB, con qemu.Endpoint, ticket string) spice.LinkErr {
	t.Helper()
	d := &spice.Dialer{Host: con.HostIP, Port: con.Port, Password: ticket, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ch, err := d.DialChannel(ctx, 0, spice.ChannelMain, 0)
	if err == nil {
		ch.Close()
		return spice.LinkOK
	}
	var le *spice.LinkError
	if errors.As(err, &le) && le.Code != spice.LinkOK {
		return le.Code
	}
	t.Fatalf("SPICE link to %s:%d failed without a link result: %v", con.HostIP, con.Port, err)
	return 0
}

// wantLink checks the link result of each ticket (the ticket values are
// never printed).
func wantLink(t testing.TB, con qemu.Endpoint, want spice.LinkErr, what string, tickets ...string) {
	t.Helper()
	for i, tk := range tickets {
		if got := linkCode(t, con, tk); got != want {
			t.Errorf("%s (ticket %d): unexpected link result (-want +got):\n%s", what, i, cmp.Diff(want.String(), got.String()))
		}
	}
}

// startedDomains records the libvirt domains tests created, for
// TestMain's survivor check.
var startedDomains sync.Map

// survivingDomains lists recorded domains libvirtd still runs.
func survivingDomains() []string {
	var names []string
	startedDomains.Range(func(k, _ any) bool { names = append(names, k.(string)); return true })
	if len(names) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := execOutput(ctx, "virsh", "-c", "qemu:///system", "list", "--name")
	if err != nil {
		return []string{"(virsh list failed: " + err.Error() + ")"}
	}
	var left []string
	for _, n := range names {
		if slices.Contains(strings.Fields(out), n) {
			left = append(left, n)
		}
	}
	return left
}
