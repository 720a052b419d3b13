package qemu_test

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/testenv"
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
