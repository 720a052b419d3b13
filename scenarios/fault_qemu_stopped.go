package scenarios

import (
	"context"
	"syscall"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/qemu"
)

// stoppedBackendTimeout is the backend deadline the lane asks of the
// proxy in fault-qemu-stopped.
const stoppedBackendTimeout = 2 * time.Second

// hangBound is how long a link may take to fail when the proxy's own
// backend deadline is unknown: long past any sensible deadline, short of
// "forever".
const hangBound = 60 * time.Second

func init() {
	Register(Scenario{
		Name: "fault-qemu-stopped",
		Tier: Hardening,
		Description: "qemu hung (SIGSTOP): its port accepts TCP and says nothing; a new link gets a link error at the proxy's backend deadline, " +
			"not a hang, and after SIGCONT the live session carries on",
		// A qemu process the scenario can stop (not a libvirt domain).
		Options: []harness.Option{harness.Libvirt(""), harness.BackendTimeout(stoppedBackendTimeout)},
		// A proxy with a backend deadline: one that links qemu itself.
		Requires: []harness.Capability{harness.CapTerminatesSPICE},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			p, ok := vm.VM.(*qemu.Process)
			if !ok {
				t.Fatalf("fault-qemu-stopped needs a qemu process, got %s", vm)
			}
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)

			require.NoError(t, syscall.Kill(p.Pid(), syscall.SIGSTOP), "SIGSTOP qemu")
			resumed := false
			resume := func() {
				if !resumed {
					resumed = true
					require.NoError(t, syscall.Kill(p.Pid(), syscall.SIGCONT), "SIGCONT qemu")
				}
			}
			defer resume()

			// The proxy's deadline when the target tells it; else only "not
			// a hang".
			lo, hi := time.Duration(0), hangBound
			if d, ok := env.Target().(harness.BackendDeadliner); ok && d.BackendDeadline() > 0 {
				lo, hi = d.BackendDeadline(), d.BackendDeadline()+3*time.Second
			}
			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			require.NoError(t, err, "fetch a .vv while qemu is stopped")
			lctx, cancel := context.WithTimeout(ctx, hi+5*time.Second)
			defer cancel()
			start := time.Now()
			_, err = harness.DialerFor(f).Connect(lctx)
			took := time.Since(start)
			le := wantRefused(t, err, "a new link while qemu is stopped")
			if took < lo || took > hi {
				t.Errorf("link error after %v; want it between %v and %v (the proxy's backend deadline)", took, lo, hi)
			}
			wantOpen(t, "while qemu was stopped", s.Main, display, inputs, cursor)

			resume()
			require.NoError(t, inputs.Type("resumed"), "type after SIGCONT")
			waitSerial(ctx, t, vm, `resumed`)
			alive(ctx, t, vm)
			t.Logf("stopped qemu: a new link got %v after %v (window %v–%v); the live session resumed", le.Code, took.Round(time.Millisecond), lo, hi)
		},
	})
}
