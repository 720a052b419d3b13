package proxy

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// metrics are the proxy's Prometheus series, on a registry of its own so
// several proxies (tests, lanes) never collide.
type metrics struct {
	reg *prometheus.Registry

	connections    *prometheus.GaugeVec     // listener
	refused        *prometheus.CounterVec   // listener, reason
	channels       *prometheus.GaugeVec     // channel
	handshakes     *prometheus.CounterVec   // result
	handshakeTime  *prometheus.HistogramVec // channel
	bytes          *prometheus.CounterVec   // channel, direction
	messages       *prometheus.CounterVec   // channel, direction
	verdicts       *prometheus.CounterVec   // channel, direction, verdict
	backendDials   *prometheus.CounterVec   // result
	sessionsEnded  prometheus.Counter
	displayGuarded prometheus.Counter

	// The CONNECT listener (connect.go).
	connectRequests *prometheus.CounterVec // result
	tunnelsActive   prometheus.Gauge
	tunnelBytes     *prometheus.CounterVec // direction

	// The WebSocket listener (websocket.go).
	wsUpgrades *prometheus.CounterVec // result
}

func newMetrics(p *Proxy) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.connections = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spice_proxy_connections_active", Help: "Client connections open, by listener (tls, plain).",
	}, []string{"listener"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spice_proxy_connections_refused_total",
		Help: "Connections closed at accept, before any byte was read, by listener and reason (handshake_limit: MaxHandshakes; source_handshake_limit: MaxHandshakesPerSource).",
	}, []string{"listener", "reason"})
	m.channels = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "spice_proxy_channels_active", Help: "Channels relaying between a client and qemu, by channel type.",
	}, []string{"channel"})
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spice_proxy_handshakes_total", Help: "Client link handshakes by result (ok, a SPICE link error name, tls_error, timeout, closed).",
	}, []string{"result"})
	m.handshakeTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "spice_proxy_handshake_seconds", Help: "Accept to link result, successful handshakes, by channel type.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10},
	}, []string{"channel"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spice_proxy_bytes_total", Help: "Data bytes relayed (headers included), by channel type and direction.",
	}, []string{"channel", "direction"})
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spice_proxy_messages_total", Help: "Data messages relayed, by channel type and direction.",
	}, []string{"channel", "direction"})
	m.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spice_proxy_firewall_verdicts_total", Help: "Messages the firewall flagged: verdict is blocked (channel closed) or warned (forwarded).",
	}, []string{"channel", "direction", "verdict"})
	m.backendDials = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spice_proxy_backend_links_total", Help: "Backend (qemu) links by result.",
	}, []string{"result"})
	m.sessionsEnded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "spice_proxy_sessions_ended_total", Help: "Sessions whose main channel ended or that were terminated.",
	})
	m.displayGuarded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "spice_proxy_display_init_injected_total", Help: "Display channels closed before the client's DISPLAY_INIT, for which the proxy sent one to qemu (spice-server 0.15 crashes otherwise).",
	})
	for _, c := range []prometheus.Collector{m.connections, m.refused, m.channels, m.handshakes, m.handshakeTime, m.bytes, m.messages,
		m.verdicts, m.backendDials, m.sessionsEnded, m.displayGuarded} {
		f(c)
	}
	for _, l := range []string{"plain", "tls", "websocket"} {
		for _, r := range []string{refusedHandshakes, refusedSourceHandshakes} {
			m.refused.WithLabelValues(l, r) // exported at 0 before the first refusal
		}
	}
	f(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "spice_proxy_link_keys_inline_total", Help: "RSA link keys generated inline because the pool was empty.",
	}, func() float64 { _, miss := p.keys.Stats(); return float64(miss) }))
	m.connectRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spice_proxy_connect_requests_total", Help: "HTTP CONNECT requests by result (ok, bad_request, method_not_allowed, bad_version, too_large, line_too_long, timeout, closed, busy, unknown_host, expired, bad_port, backend_error, backend_timeout, shutdown).",
	}, []string{"result"})
	m.tunnelsActive = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "spice_proxy_tunnels_active", Help: "CONNECT tunnels relaying between a client and a console's SPICE port.",
	})
	m.tunnelBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spice_proxy_tunnel_bytes_total", Help: "Bytes relayed through CONNECT tunnels (ciphertext on TLS ports), by direction; updated every 64 KiB and when a tunnel ends.",
	}, []string{"direction"})
	m.wsUpgrades = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spice_proxy_websocket_upgrades_total", Help: "WebSocket upgrade requests by result (ok, not_found, not_websocket, origin_refused, token_refused, upgrade_failed, shutdown); the SPICE link that follows counts in spice_proxy_handshakes_total.",
	}, []string{"result"})
	f(m.wsUpgrades)
	f(m.connectRequests)
	f(m.tunnelsActive)
	f(m.tunnelBytes)
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "spice_proxy_connect_pending", Help: "CONNECT connections still sending their request head (capped by Tunnel.MaxPending).",
	}, func() float64 { return float64(len(p.tun.pending)) }))
	f(prometheus.NewGoCollector())
	f(prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// MetricsHandler serves the proxy's Prometheus metrics.
func (p *Proxy) MetricsHandler() http.Handler {
	p.init()
	return promhttp.HandlerFor(p.metrics.reg, promhttp.HandlerOpts{})
}

// Metric sums the current values of the counters and gauges named name
// whose labels include the given (name, value) pairs; 0 when none match.
// Tests and scenarios read the proxy's state with it.
func (p *Proxy) Metric(name string, labels ...string) (float64, error) {
	fams, err := p.Gatherer().Gather()
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if hasLabels(m.GetLabel(), labels) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum, nil
}

func hasLabels(have []*dto.LabelPair, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, lp := range have {
			found = found || (lp.GetName() == want[i] && lp.GetValue() == want[i+1])
		}
		if !found {
			return false
		}
	}
	return true
}

// Gatherer exposes the registry (tests read counters from it).
func (p *Proxy) Gatherer() prometheus.Gatherer {
	p.init()
	return p.metrics.reg
}
