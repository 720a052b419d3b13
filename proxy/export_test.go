package proxy

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Series returns one series of the proxy's metric name, selected by
// every one of its labels (name, value pairs), for tests to read with
// prometheus/testutil.ToFloat64.
func Series(p *Proxy, name string, labels ...string) prometheus.Collector {
	p.init()
	m := p.metrics
	lv := prometheus.Labels{}
	for i := 0; i+1 < len(labels); i += 2 {
		lv[labels[i]] = labels[i+1]
	}
	switch name {
	case "spice_proxy_connections_active":
		return m.connections.With(lv)
	case "spice_proxy_connections_refused_total":
		return m.refused.With(lv)
	case "spice_proxy_channels_active":
		return m.channels.With(lv)
	case "spice_proxy_handshakes_total":
		return m.handshakes.With(lv)
	case "spice_proxy_bytes_total":
		return m.bytes.With(lv)
	case "spice_proxy_messages_total":
		return m.messages.With(lv)
	case "spice_proxy_firewall_verdicts_total":
		return m.verdicts.With(lv)
	case "spice_proxy_backend_links_total":
		return m.backendDials.With(lv)
	case "spice_proxy_sessions_ended_total":
		return m.sessionsEnded
	case "spice_proxy_display_init_injected_total":
		return m.displayGuarded
	case "spice_proxy_websocket_upgrades_total":
		return m.wsUpgrades.With(lv)
	}
	panic(fmt.Sprintf("proxy.Series: no metric %q", name))
}

// ProbeWait is how long a client's link reply waits for a console's
// first caps probe.
const ProbeWait = probeWait

// WaitProbes waits for the caps probes in flight. Call it only while no
// link is in progress (the probes' WaitGroup must not see an Add then).
func WaitProbes(p *Proxy) { p.caps.wg.Wait() }
