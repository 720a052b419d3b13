package scenarios

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name: "fault-shutdown-under-load",
		Description: "proxy Shutdown while two sessions type and draw: the one that ends during the drain finishes, the other is cut at the deadline, " +
			"the proxy holds nothing, and both qemus stay alive and serve a new session",
		Internal: true,
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
				check(t, err, "session on "+vm.String())
				defer s.Close()
				d, i, c := openAll(ctx, t, s)
				all = append(all, sess{s, sessionIDFromTitle(f.Title), []*spice.Channel{s.Main, d, i, c}})
			}
			// Load: both sessions type into their guests (which echo on
			// screen and serial, so displays redraw) until the end.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, x := range all {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						case <-time.After(20 * time.Millisecond):
						}
						if x.chans[2].Type("x") != nil {
							return
						}
					}
				}()
			}
			defer func() { close(stop); wg.Wait() }()
			time.Sleep(300 * time.Millisecond)

			const drain = time.Second
			sctx, cancel := context.WithTimeout(ctx, drain)
			defer cancel()
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- env.Proxy.Shutdown(sctx) }()
			time.Sleep(200 * time.Millisecond)
			all[0].s.Close() // ends by itself during the drain
			var err error
			select {
			case err = <-done:
			case <-time.After(drain + 10*time.Second):
				t.Fatalf("Shutdown did not return 10 s after its %v drain deadline", drain)
			}
			took := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("unexpected Shutdown result (-want +got):\n-%v (a session had to be cut)\n+%v", context.DeadlineExceeded, err)
			}
			cut := waitClosed(t, start, drain+time.Second, "Shutdown", all[1].chans...)
			for i, want := range []string{"main channel closed: closed", "main channel closed: shutdown"} {
				info, err := env.Store.Session(all[i].id)
				check(t, err, "session in the store")
				if info.State != "ended" || info.Reason != want {
					t.Errorf("session %d: unexpected end (-want +got):\n-ended: %s\n+%s: %s", i, want, info.State, info.Reason)
				}
			}
			proxyIdle(ctx, t, env, time.Second)
			if c, err := net.DialTimeout("tcp", env.Proxy.TLSAddr().String(), time.Second); err == nil {
				c.Close()
				t.Errorf("the proxy's TLS listener still accepts after Shutdown")
			}
			t.Logf("Shutdown (%v drain) returned after %v; the live session was cut %v after it began", drain, took.Round(time.Millisecond), cut.Round(time.Millisecond))

			// spice-server crashed 1 s after a bad display close; then
			// each qemu must still serve a full session.
			time.Sleep(1500 * time.Millisecond)
			for _, vm := range env.VMs {
				alive(ctx, t, vm)
				s, _, err := env.Connect(ctx, harness.Direct, vm)
				check(t, err, "a direct session after the proxy's shutdown")
				openAll(ctx, t, s)
				s.Close()
			}
		},
	})
}
