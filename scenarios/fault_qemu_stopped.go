package scenarios

import (
	"context"
	"syscall"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
)

// stoppedBackendTimeout is the proxy's backend deadline in fault-qemu-stopped.
const stoppedBackendTimeout = 2 * time.Second

func init() {
	Register(Scenario{
		Name: "fault-qemu-stopped",
		Description: "qemu hung (SIGSTOP): its port accepts TCP and says nothing; a new link gets an error link result at the proxy's backend deadline, " +
			"not a hang, and after SIGCONT the live session carries on",
		// A qemu process the scenario can stop (not a libvirt domain);
		// the backend deadline only applies to the in-process proxy.
		Internal: true,
		Options:  []harness.Option{harness.Libvirt(""), harness.BackendTimeout(stoppedBackendTimeout)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			p, ok := vm.VM.(*qemu.Process)
			if !ok {
				t.Fatalf("fault-qemu-stopped needs a qemu process, got %s", vm)
			}
			s, _, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)

			check(t, syscall.Kill(p.Pid(), syscall.SIGSTOP), "SIGSTOP qemu")
			resumed := false
			resume := func() {
				if !resumed {
					resumed = true
					check(t, syscall.Kill(p.Pid(), syscall.SIGCONT), "SIGCONT qemu")
				}
			}
			defer resume()

			f, err := env.FetchVV(ctx, harness.Proxy, vm)
			check(t, err, "fetch a .vv while qemu is stopped")
			start := time.Now()
			_, err = harness.Dialer(f.File).Connect(ctx)
			took := time.Since(start)
			wantLinkCode(t, err, spice.StepLinkResult, spice.ErrLinkGeneric)
			if took < stoppedBackendTimeout || took > stoppedBackendTimeout+3*time.Second {
				t.Errorf("error link result after %v; want the %v backend deadline (+3 s slack)", took, stoppedBackendTimeout)
			}
			wantOpen(t, "while qemu was stopped", s.Main, display, inputs, cursor)

			resume()
			check(t, inputs.Type("resumed"), "type after SIGCONT")
			waitSerial(ctx, t, vm, `resumed`)
			alive(ctx, t, vm)
			t.Logf("stopped qemu: a new link got ERROR after %v (backend deadline %v); the live session resumed", took.Round(time.Millisecond), stoppedBackendTimeout)
		},
	})
}
