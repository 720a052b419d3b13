package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a certificate reload (TLSReload.Result, the
// spice_proxy_tls_reload_total label).
const (
	TLSUnchanged = "unchanged" // the files hold the certificate served
	TLSReloaded  = "reloaded"  // a new certificate is served
	TLSRefused   = "refused"   // the new files fail a check: the served one is kept
)

// TLSReload is what a reload did with the proxy's certificate. Only a
// certificate from files (TLSCertFile, TLSKeyFile, CAFile) or from
// StateDir is reloaded; one given in Config or generated for the run
// stays as it is (the reload then has no TLSReload).
type TLSReload struct {
	Result string
	Origin string // files or state-dir
	// Subject and Expires describe the certificate served afterwards.
	Subject string
	Expires time.Time
	// Err says why the new files were refused (naming the setting to
	// fix), nil otherwise.
	Err error
}

// reloadTLS re-reads the certificate as Start did: the files are checked
// the same way (key mode, expiry, verification against the CA), and a
// kept state-dir certificate near its expiry is issued again. What passes
// is served from the next TLS handshake on; open sessions keep theirs.
// What fails is reported and the served certificate kept.
func (d *Daemon) reloadTLS(now time.Time) *TLSReload {
	d.mu.Lock()
	cur := d.tls
	d.mu.Unlock()
	var (
		m   tlsMaterial
		err error
	)
	switch cur.origin {
	case "files":
		m, err = d.cfg.tlsFromFiles(now)
	case "state-dir":
		m, err = d.cfg.tlsFromStateDir(d.log, now)
	default:
		return nil
	}
	r := &TLSReload{Origin: cur.origin}
	switch {
	case err != nil:
		r.Result, r.Err = TLSRefused, err
	case sameCertificate(cur.cert, m.cert) && bytes.Equal(cur.caPEM, m.caPEM):
		r.Result = TLSUnchanged
	default:
		if err := d.proxy.SetCertificate(m.cert, m.caPEM); err != nil {
			r.Result, r.Err = TLSRefused, d.cfg.errorf(SettingTLSCert, ErrConfig, "%s: %v", d.cfg.name(SettingTLSCert), err)
			break
		}
		d.mu.Lock()
		d.tls = m
		d.mu.Unlock()
		r.Result = TLSReloaded
	}
	if c, _, subject := d.proxy.Served(); c != nil && c.Leaf != nil {
		r.Subject, r.Expires = subject, c.Leaf.NotAfter
	}
	d.metrics.observeTLS(r)
	level, attrs := slog.LevelInfo, []slog.Attr{slog.String("result", r.Result), slog.String("origin", r.Origin),
		slog.String("host_subject", r.Subject), slog.String("expires", r.Expires.Format(time.DateOnly))}
	if r.Err != nil {
		level, attrs = slog.LevelError, append(attrs, slog.String("err", r.Err.Error()))
	}
	d.log.LogAttrs(context.Background(), level, "certificate reload", attrs...)
	return r
}

// sameCertificate reports whether a and b are the same chain.
func sameCertificate(a, b *tls.Certificate) bool {
	if a == nil || b == nil || len(a.Certificate) != len(b.Certificate) {
		return false
	}
	for i := range a.Certificate {
		if !bytes.Equal(a.Certificate[i], b.Certificate[i]) {
			return false
		}
	}
	return true
}

// tlsMetrics are the certificate's series.
type tlsMetrics struct {
	reloads *prometheus.CounterVec // result
	expiry  prometheus.Gauge
}

func newTLSMetrics(reg *prometheus.Registry) tlsMetrics {
	m := tlsMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spice_proxy_tls_reload_total",
			Help: "Reloads of the proxy's certificate (SIGHUP, POST /reload) by result: unchanged, reloaded, refused (the served one is kept).",
		}, []string{"result"}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "spice_proxy_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate the TLS listener serves expires.",
		}),
	}
	for _, r := range []string{TLSUnchanged, TLSReloaded, TLSRefused} {
		m.reloads.WithLabelValues(r)
	}
	reg.MustRegister(m.reloads, m.expiry)
	return m
}

func (m *metrics) observeTLS(r *TLSReload) {
	m.tls.reloads.WithLabelValues(r.Result).Inc()
	if !r.Expires.IsZero() {
		m.tls.expiry.Set(float64(r.Expires.Unix()))
	}
}
