package qemu

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/testenv"
)

// TestIntegrationRetryOnBindFailure makes the port probe hand out a
// port that another process holds, as happens when something grabs the
// probed port before qemu binds it: Start must relaunch on another port.
func TestIntegrationRetryOnBindFailure(t *testing.T) {
	testenv.Short(t)
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	taken := held.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPort = func(addr string) (int, error) {
		calls++
		if calls <= 2 {
			return taken, nil // the probe lies twice
		}
		return probePort(addr)
	}
	defer func() { pickPort = probePort }()
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vm, err := Start(ctx, Accel(AccelTCG), Logger(slog.New(slog.NewTextHandler(&log, nil))))
	defer vm.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := vm.Endpoint().Port; got == taken || got == 0 {
		t.Fatalf("VM runs on port %d; the taken port was %d", got, taken)
	}
	if calls != 3 {
		t.Errorf("unexpected number of port picks (-want +got): -3 +%d", calls)
	}
	if n := strings.Count(log.String(), "SPICE port taken, retrying"); n != 2 {
		t.Errorf("want 2 retries logged, got %d:\n%s", n, log.String())
	}
	if err := vm.WaitSPICE(ctx); err != nil {
		t.Fatal(err)
	}
}
