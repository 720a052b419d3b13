package main

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"slices"
	"time"

	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
)

type relayMode int

const (
	relayDirectPlain relayMode = iota
	relayProxyPlain
	relayDirectTLS
	relayProxyTLS
	nRelayModes
)

func (m relayMode) String() string {
	return [...]string{"direct_plain", "proxy_plain", "direct_tls", "proxy_tls"}[m]
}

// benchRelay streams o.relayBytes of display messages from a synthetic
// backend (spicetest, honouring the ack window; the Go client ACKs
// every window) to the Go client: straight from the backend, and through
// a proxy process, with the client leg plain and TLS. The proxy's
// backend leg is plain TCP, as to qemu without tls-port. The direct TLS
// run is a spicetest listening with TLS, so the TLS client leg can be
// compared with what a client pays for TLS without the proxy too.
func benchRelay(ctx context.Context, r *report, o *options) error {
	key, err := spice.GenerateLinkKey()
	if err != nil {
		return err
	}
	ca, err := pki.NewCA("spice-bench backend CA")
	if err != nil {
		return err
	}
	leaf, err := ca.Issue(pkix.Name{CommonName: "localhost"}, "localhost", "127.0.0.1")
	if err != nil {
		return err
	}
	newServer := func(tc *tls.Config) (*spicetest.Server, error) {
		s := &spicetest.Server{Password: randomTicket(), TLS: tc, LinkKey: key,
			StreamBytes: o.relayBytes, StreamMessageSize: o.relayMsgSize, DisplayInitDelay: time.Microsecond}
		return s, s.Start()
	}
	plainSrv, err := newServer(nil)
	if err != nil {
		return err
	}
	defer plainSrv.Close()
	tlsSrv, err := newServer(&tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	defer tlsSrv.Close()
	syn, err := startSynthetic(ctx, plainSrv)
	if err != nil {
		return err
	}
	defer syn.Close()

	dialer := func(m relayMode) (*spice.Dialer, error) {
		switch m {
		case relayDirectPlain:
			return &spice.Dialer{Host: "127.0.0.1", Port: plainSrv.Port(), Password: plainSrv.Password}, nil
		case relayDirectTLS:
			return &spice.Dialer{Host: "127.0.0.1", TLSPort: tlsSrv.Port(), Password: tlsSrv.Password, CA: ca.Pool()}, nil
		}
		return syn.dialer(ctx, m == relayProxyTLS)
	}
	mbps := make([][]float64, nRelayModes)
	for round := range o.relayRuns {
		for i := range nRelayModes {
			m := relayMode((int(i) + round) % int(nRelayModes))
			if len(o.relayModes) > 0 && !slices.Contains(o.relayModes, m.String()) {
				continue
			}
			d, err := dialer(m)
			if err != nil {
				return err
			}
			el, err := streamOnce(ctx, d, o.relayBytes, o.relayMsgSize)
			if err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
			v := float64(o.relayBytes) / el.Seconds() / 1e6
			mbps[m] = append(mbps[m], v)
			if o.verbose {
				progress("relay run %d %s: %.0f MB/s", round, m, v)
			}
		}
	}
	if len(o.relayModes) > 0 {
		for m := range nRelayModes {
			if len(mbps[m]) > 0 {
				r.line("relay."+m.String(), fmtMBps(median(mbps[m])))
			}
		}
		return nil
	}
	size := fmt.Sprintf(" (%d MiB in %d KiB messages, median of %d)", o.relayBytes>>20, o.relayMsgSize>>10, o.relayRuns)
	r.line("relay.direct_plain", fmtMBps(median(mbps[relayDirectPlain]))+size)
	r.ratio("relay.proxy_plain", fmtMBps(median(mbps[relayProxyPlain])), median(ratios(mbps[relayDirectPlain], mbps[relayProxyPlain])), "direct plain")
	r.ratio("relay.direct_tls", fmtMBps(median(mbps[relayDirectTLS])), median(ratios(mbps[relayDirectPlain], mbps[relayDirectTLS])), "direct plain")
	r.ratio("relay.proxy_tls", fmtMBps(median(mbps[relayProxyTLS])), median(ratios(mbps[relayDirectTLS], mbps[relayProxyTLS])), "direct tls")
	r.ratio("relay.proxy_tls_vs_plain", fmtMBps(median(mbps[relayProxyTLS])), median(ratios(mbps[relayDirectPlain], mbps[relayProxyTLS])), "direct plain")
	return nil
}

// streamOnce opens a session and its display channel, sends
// DISPLAY_INIT and times until every message of the stream has arrived.
func streamOnce(ctx context.Context, d *spice.Dialer, total int64, msgSize int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	s, err := d.Connect(ctx)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	disp, err := s.Open(ctx, spice.ChannelDisplay, 0)
	if err != nil {
		return 0, err
	}
	// SET_ACK, SURFACE_CREATE, the first DRAW_COPY and MARK, then the
	// stream.
	want := uint64(4 + (total+int64(msgSize)-1)/int64(msgSize))
	start := time.Now()
	if err := disp.InitDisplay(); err != nil {
		return 0, err
	}
	for {
		if _, err := disp.Recv(ctx); err != nil {
			return 0, err
		}
		if got, _ := disp.Stats(); got >= want {
			return time.Since(start), nil
		}
	}
}
