package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/poll"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:      "fault-shutdown-under-load",
		Tier:      Hardening,
		Exercises: ProxySPICE | QemuDirect,
		Description: "proxy Shutdown while two sessions type and draw: the one that ends during the drain finishes, the other is cut at the deadline, " +
			"the proxy holds nothing, and both qemus stay alive and serve a new session",
		Requires: []harness.Capability{harness.CapShutdown, harness.CapSessionState, harness.CapIdle, harness.CapSPICEListener, harness.CapTerminate},
		Options:  []harness.Option{harness.VMs(2)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			type sess struct {
				s     *spice.Session
				id    string
				chans []*spice.Channel
			}
			var all []sess
			for _, vm := range env.VMs {
				s, f, err := env.Connect(ctx, harness.Proxy, vm)
				require.NoError(t, err, "session on %s", vm)
				defer s.Close()
				d, i, c := openAll(ctx, t, s)
				id, err := env.SessionID(ctx, f)
				require.NoError(t, err, "session id")
				all = append(all, sess{s, id, []*spice.Channel{s.Main, d, i, c}})
			}
			// Load: both sessions type into their guests (which echo on
			// screen and serial, so displays redraw) until the end.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, x := range all {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Pacing, not waiting: a key every 20 ms is load the
					// guest keeps up with (qemu's PS/2 queue drops keys
					// sent faster), so the displays keep redrawing.
					tick := time.NewTicker(20 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
						}
						if x.chans[2].Type("x") != nil {
							return
						}
					}
				}()
			}
			defer func() { close(stop); wg.Wait() }()
			// The load is on once both guests echo the typing.
			for _, vm := range env.VMs {
				waitSerial(ctx, t, vm, `xxx`)
			}

			const drain = time.Second
			sctx, cancel := context.WithTimeout(ctx, drain)
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- env.ShutdownProxy(sctx) }()
			// The drain has begun once the listener refuses new clients;
			// then session 0 ends by itself.
			_, tlsAddr := env.Target().(harness.SPICEListener).SPICEAddrs()
			require.NoError(t, refusing(ctx, tlsAddr), "the TLS listener after Shutdown began")
			all[0].s.Close()
			var err error
			select {
			case err = <-done: // the event waited on: Shutdown returned
			case <-time.After(drain + 10*time.Second): // only the bound that fails a hung Shutdown
				t.Fatalf("Shutdown did not return 10 s after its %v drain deadline", drain)
			}
			took := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("unexpected Shutdown result (-want +got):\n-%v (a session had to be cut)\n+%v", context.DeadlineExceeded, err)
			}
			cut := waitClosed(t, start, drain+5*time.Second, "Shutdown", all[1].chans...)
			for i, want := range []string{"main channel closed: closed", "main channel closed: shutdown"} {
				st, err := env.Session(ctx, all[i].id)
				require.NoError(t, err, "session in the store")
				if d := cmp.Diff(harness.SessionState{State: "ended", Reason: want}, st); d != "" {
					t.Errorf("session %d: unexpected end (-want +got):\n%s", i, d)
				}
			}
			ictx, icancel := context.WithTimeout(ctx, 10*time.Second)
			defer icancel()
			require.NoError(t, env.WaitIdle(ictx), "the proxy after Shutdown")
			t.Logf("Shutdown (%v drain) returned after %v; the live session was cut %v after it began", drain, took.Round(time.Millisecond), cut.Round(time.Millisecond))

			// spice-server crashed up to a second after a bad display
			// close; then each qemu must still serve a full session.
			for _, vm := range env.VMs {
				survives(ctx, t, vm, 1500*time.Millisecond)
				s, err := directDialer(vm).Connect(ctx)
				require.NoError(t, err, "a direct session after the proxy's shutdown")
				openAll(ctx, t, s)
				s.Close()
			}
		},
	})
}

// refusing waits until nothing accepts connections at addr. A target
// announces no "listener closed" event, so a refused dial is the
// observation; poll.Until re-dials until one is refused.
func refusing(ctx context.Context, addr string) error {
	return poll.Until(ctx, 5*time.Millisecond, func(ctx context.Context) error {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil
		}
		c.Close()
		return fmt.Errorf("%s still accepts connections", addr)
	})
}
