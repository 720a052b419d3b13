package scenarios

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name:      "fault-qemu-killed",
		Tier:      Hardening,
		Exercises: ProxySPICE,
		Description: "qemu SIGKILLed mid-session: the client's channels get a clean close at once; " +
			"where the proxy shows them, it holds nothing, the session has ended and the metrics and audit agree",
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			s, f, err := env.Connect(ctx, harness.Proxy, vm)
			require.NoError(t, err, "session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			chans := []*spice.Channel{s.Main, display, inputs, cursor}
			for _, c := range chans {
				go func() { <-c.Done(); c.Close() }() // spice-gtk closes a channel on EOF
			}

			start := time.Now()
			require.NoError(t, vm.Kill(), "SIGKILL qemu")
			killed := time.Since(start)
			closed := waitClosed(t, start, 10*time.Second, "qemu was killed", chans...)
			for _, c := range chans {
				if err := c.Err(); !errors.Is(err, io.EOF) {
					t.Errorf("%s: unexpected end (-want +got):\n-a clean EOF\n+%v", c.ID, err)
				}
			}
			t.Logf("qemu killed (Kill returned after %v): 4 client channels closed cleanly within %v",
				killed.Round(time.Millisecond), closed.Round(time.Millisecond))
			proxyAfterKill(ctx, t, env, f)
		},
	})
}

// proxyAfterKill checks the proxy's own view where the target shows it:
// idle, the session ended, metrics and audit in agreement.
func proxyAfterKill(ctx context.Context, t harness.T, env *harness.Env, f *harness.VVResponse) {
	t.Helper()
	tgt := env.Target()
	if harness.HasCapability(tgt, harness.CapIdle) {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		require.NoError(t, env.WaitIdle(ictx), "the proxy after qemu died")
		cancel()
	}
	if !harness.HasCapability(tgt, harness.CapTerminate) {
		return // no way to name the session
	}
	id, err := env.SessionID(ctx, f)
	require.NoError(t, err, "the session of the .vv")
	if harness.HasCapability(tgt, harness.CapSessionState) {
		st, err := env.Session(ctx, id)
		require.NoError(t, err, "the session in the proxy")
		if st.State != "ended" || st.Channels != 0 || !strings.HasPrefix(st.Reason, "main channel closed") {
			t.Errorf("unexpected session (-want +got):\n%s", cmp.Diff(
				harness.SessionState{State: "ended", Reason: "main channel closed…", Channels: 0}, st))
		}
	}
	if harness.HasCapability(tgt, harness.CapMetrics) {
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
			got, err := env.Metric(ctx, m.name, m.labels...)
			require.NoError(t, err, "metric %s", m.name)
			if d := cmp.Diff(m.want, got); d != "" {
				t.Errorf("unexpected %s%v (-want +got):\n%s", m.name, m.labels, d)
			}
		}
	}
	if harness.HasCapability(tgt, harness.CapAudit) {
		n, err := env.AuditCount(ctx, id, "channel_closed")
		require.NoError(t, err, "audit log")
		if d := cmp.Diff(4, n); d != "" {
			t.Errorf("unexpected channel_closed audit events (-want +got):\n%s", d)
		}
	}
}
