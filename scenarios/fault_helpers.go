package scenarios

import (
	"context"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/store"
)

// Helpers of the fault_* and hostile_* scenarios.

// proxyMetric sums the in-process proxy's series name whose labels
// (name, value pairs) match.
func proxyMetric(t harness.T, env *harness.Env, name string, labels ...string) float64 {
	t.Helper()
	v, err := env.Proxy.Metric(name, labels...)
	check(t, err, "gather the proxy's metrics")
	return v
}

// proxyIdle waits until the in-process proxy holds no channel and no
// handshake, and its channel and connection gauges agree.
func proxyIdle(ctx context.Context, t harness.T, env *harness.Env, within time.Duration) {
	t.Helper()
	end := time.Now().Add(within)
	for {
		st := env.Proxy.Stats()
		if st.Channels == 0 && st.Handshaking == 0 &&
			proxyMetric(t, env, "spice_proxy_channels_active") == 0 &&
			proxyMetric(t, env, "spice_proxy_connections_active") == 0 {
			return
		}
		if time.Now().After(end) || ctx.Err() != nil {
			t.Fatalf("the proxy still holds %+v after %v (channels_active %v, connections_active %v)", st, within,
				proxyMetric(t, env, "spice_proxy_channels_active"), proxyMetric(t, env, "spice_proxy_connections_active"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// auditCount counts the store's events of kind for session id.
func auditCount(env *harness.Env, id string, kind store.EventKind) int {
	n := 0
	for _, ev := range env.Audit() {
		if ev.Session == id && ev.Kind == kind {
			n++
		}
	}
	return n
}
