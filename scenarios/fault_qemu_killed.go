package scenarios

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
)

func init() {
	Register(Scenario{
		Name:        "fault-qemu-killed",
		Description: "qemu SIGKILLed mid-session: the client's channels get a clean close at once, the proxy holds nothing, the session has ended and the metrics agree",
		Internal:    true,
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			check(t, err, "session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			id := sessionIDFromTitle(f.Title)
			chans := []*spice.Channel{s.Main, display, inputs, cursor}
			for _, c := range chans {
				go func() { <-c.Done(); c.Close() }() // spice-gtk closes a channel on EOF
			}

			start := time.Now()
			check(t, vm.Kill(), "SIGKILL qemu")
			killed := time.Since(start)
			closed := waitClosed(t, start, 5*time.Second, "qemu was killed", chans...)
			for _, c := range chans {
				if err := c.Err(); !errors.Is(err, io.EOF) {
					t.Errorf("%s: unexpected end (-want +got):\n-a clean EOF\n+%v", c.ID, err)
				}
			}
			proxyIdle(ctx, t, env, 5*time.Second)
			idle := time.Since(start)

			info, err := env.Store.Session(id)
			check(t, err, "the session in the store")
			if info.State != "ended" || len(info.Channels) != 0 || !strings.HasPrefix(info.Reason, "main channel closed") {
				t.Errorf("unexpected session (-want +got):\n-ended, no channels, main channel closed\n+%s, %v, %q", info.State, info.Channels, info.Reason)
			}
			for _, m := range []struct {
				name   string
				labels []string
				want   float64
			}{
				{"spice_proxy_handshakes_total", []string{"result", "ok"}, 4},
				{"spice_proxy_backend_links_total", []string{"result", "ok"}, 4},
				{"spice_proxy_sessions_ended_total", nil, 1},
				{"spice_proxy_channels_active", nil, 0},
				{"spice_proxy_connections_active", nil, 0},
			} {
				if got := proxyMetric(t, env, m.name, m.labels...); got != m.want {
					t.Errorf("unexpected %s%v (-want +got):\n-%v\n+%v", m.name, m.labels, m.want, got)
				}
			}
			if got := auditCount(env, id, store.EventChannelClosed); got != 4 {
				t.Errorf("unexpected channel_closed audit events (-want +got):\n-4\n+%d", got)
			}
			t.Logf("qemu killed (Kill returned after %v): 4 client channels closed cleanly within %v, the proxy idle within %v",
				killed.Round(time.Millisecond), closed.Round(time.Millisecond), idle.Round(time.Millisecond))
		},
	})
}
