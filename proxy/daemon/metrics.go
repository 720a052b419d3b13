package daemon

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/store"
)

// metrics are the daemon's series, on a registry of its own beside the
// proxy's; /metrics serves both. They follow the proxy's spice_proxy_
// prefix.
type metrics struct {
	reg          *prometheus.Registry
	reloads      *prometheus.CounterVec // result
	lastReload   prometheus.Gauge
	lastOK       prometheus.Gauge
	lastGoodTime prometheus.Gauge
	tls          tlsMetrics
}

var (
	sourceErroredDesc = prometheus.NewDesc("spice_proxy_source_errored",
		"1 when the source's latest entry in the sources file has errors (it then serves its last good consoles), else 0.", []string{"source"}, nil)
	sourceConsolesDesc = prometheus.NewDesc("spice_proxy_source_consoles",
		"Consoles the source serves.", []string{"source"}, nil)
)

func newMetrics(st *store.Store) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "spice_proxy_sources_reload_total",
		Help: "Reloads of the sources file by result: ok (valid), partial (errors: errored sources keep their last good consoles), refused (unreadable or unparsable: nothing changed).",
	}, []string{"result"})
	for _, r := range []string{api.ReloadOK, api.ReloadPartial, api.ReloadRefused} {
		m.reloads.WithLabelValues(r)
	}
	m.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "spice_proxy_sources_last_reload_timestamp_seconds", Help: "When the sources file was last reloaded, whatever the result.",
	})
	m.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "spice_proxy_sources_last_reload_successful", Help: "1 when the last reload found a valid file, else 0.",
	})
	m.lastGoodTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "spice_proxy_sources_last_reload_success_timestamp_seconds", Help: "When a reload last found a valid file.",
	})
	m.reg.MustRegister(m.reloads, m.lastReload, m.lastOK, m.lastGoodTime, sourceCollector{st})
	m.tls = newTLSMetrics(m.reg)
	return m
}

func (m *metrics) observe(r ReloadResult) {
	m.reloads.WithLabelValues(r.Result).Inc()
	m.lastReload.Set(float64(r.At.UnixNano()) / 1e9)
	if r.Result == api.ReloadOK {
		m.lastOK.Set(1)
		m.lastGoodTime.Set(float64(r.At.UnixNano()) / 1e9)
	} else {
		m.lastOK.Set(0)
	}
}

// sourceCollector reads the per-source series from the store at scrape
// time, so a removed source's series disappear with it.
type sourceCollector struct{ st *store.Store }

func (c sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sourceErroredDesc
	ch <- sourceConsolesDesc
}

func (c sourceCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.st.Sources() {
		errored := 0.0
		if s.Errored {
			errored = 1
		}
		ch <- prometheus.MustNewConstMetric(sourceErroredDesc, prometheus.GaugeValue, errored, s.Name)
		ch <- prometheus.MustNewConstMetric(sourceConsolesDesc, prometheus.GaugeValue, float64(s.Consoles), s.Name)
	}
}

// Gatherer gathers the proxy's metrics and the daemon's (what /metrics
// serves).
func (d *Daemon) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{d.proxy.Gatherer(), d.metrics.reg}
}

// MetricsHandler serves Gatherer in the Prometheus text format.
func (d *Daemon) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(d.Gatherer(), promhttp.HandlerOpts{})
}
