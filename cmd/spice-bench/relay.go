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
	relayForward     // a bare TCP forwarder (io.Copy) in the proxy's process
	relayProxyPlainB // the -ab-helper proxy, for before/after comparisons
	relayProxyTLSB
	nRelayModes
)

func (m relayMode) String() string {
	return [...]string{"direct_plain", "proxy_plain", "direct_tls", "proxy_tls", "tcp_forwarder", "proxy_plain_b", "proxy_tls_b"}[m]
}

// benchRelay streams o.relayBytes of display messages from a synthetic
// backend (spicetest, honouring the ack window; the Go client ACKs
// every window) to the Go client: straight from the backend, and through
// a proxy process, with the client leg plain and TLS. The proxy's
// backend leg is plain TCP, as to qemu without tls-port. The direct TLS
// run is a spicetest listening with TLS, so the TLS client leg can be
// compared with what a client pays for TLS without the proxy too. The
// tcp_forwarder run goes through a bare io.Copy forwarder (splice(2), no
// framing, no checks) in the proxy's process: what one extra hop costs
// on this machine whatever the relay does.
//
// It runs once with o.relayMsgSize messages (64 KiB: large draws) and,
// when o.relaySmallMsg is set, again with small ones (4 KiB: small
// draws, like the text-mode guest's 6.9 KB first DRAW_COPY, where
// per-message costs dominate).
func benchRelay(ctx context.Context, r *report, o *options) error {
	if err := relaySize(ctx, r, o, "relay", o.relayBytes, o.relayMsgSize); err != nil {
		return err
	}
	if o.relaySmallMsg > 0 {
		return relaySize(ctx, r, o, fmt.Sprintf("relay_%dk", o.relaySmallMsg>>10), o.relaySmallBytes, o.relaySmallMsg)
	}
	return nil
}

func relaySize(ctx context.Context, r *report, o *options, prefix string, total int64, msgSize int) error {
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
			StreamBytes: total, StreamMessageSize: msgSize, DisplayInitDelay: time.Microsecond}
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
	syn, err := startSynthetic(ctx, plainSrv, "", "--forward", plainSrv.Addr().String())
	if err != nil {
		return err
	}
	defer syn.Close()
	modes := []relayMode{relayDirectPlain, relayProxyPlain, relayDirectTLS, relayProxyTLS, relayForward}
	var synB *synthetic
	if o.abHelper != "" {
		if synB, err = startSynthetic(ctx, plainSrv, o.abHelper); err != nil {
			return err
		}
		defer synB.Close()
		modes = append(modes, relayProxyPlainB, relayProxyTLSB)
	}

	dialer := func(m relayMode) (*spice.Dialer, error) {
		switch m {
		case relayDirectPlain:
			return &spice.Dialer{Host: "127.0.0.1", Port: plainSrv.Port(), Password: plainSrv.Password}, nil
		case relayDirectTLS:
			return &spice.Dialer{Host: "127.0.0.1", TLSPort: tlsSrv.Port(), Password: tlsSrv.Password, CA: ca.Pool()}, nil
		case relayForward:
			return &spice.Dialer{Host: "127.0.0.1", Port: syn.helper.ForwardPort, Password: plainSrv.Password}, nil
		}
		if m == relayProxyPlainB || m == relayProxyTLSB {
			return synB.dialer(ctx, m == relayProxyTLSB)
		}
		return syn.dialer(ctx, m == relayProxyTLS)
	}
	mbps := make([][]float64, nRelayModes)
	proxyCPUs := make([][]float64, nRelayModes)
	for round := range o.relayRuns {
		for i := range modes {
			m := modes[(i+round)%len(modes)]
			if len(o.relayModes) > 0 && !slices.Contains(o.relayModes, m.String()) {
				continue
			}
			d, err := dialer(m)
			if err != nil {
				return err
			}
			h := syn.helper
			if m == relayProxyPlainB || m == relayProxyTLSB {
				h = synB.helper
			}
			self0, proxy0 := cpuSelf(), h.cpu()
			el, err := streamOnce(ctx, d, total, msgSize)
			if err != nil {
				return fmt.Errorf("%s: %w", m, err)
			}
			gib := float64(total) / (1 << 30)
			selfCPU, proxyCPU := (cpuSelf()-self0).Seconds()/gib, (h.cpu()-proxy0).Seconds()/gib
			v := float64(total) / el.Seconds() / 1e6
			mbps[m] = append(mbps[m], v)
			switch m {
			case relayProxyPlain, relayProxyTLS, relayForward, relayProxyPlainB, relayProxyTLSB:
				proxyCPUs[m] = append(proxyCPUs[m], proxyCPU)
			}
			if o.verbose {
				progress("%s run %d %s: %.0f MB/s; CPU per GiB: bench (backend+client) %.2f s, proxy %.2f s", prefix, round, m, v, selfCPU, proxyCPU)
			}
		}
	}
	if len(o.relayModes) > 0 || o.abHelper != "" {
		for m := range nRelayModes {
			if len(mbps[m]) > 0 {
				v := fmtMBps(median(mbps[m]))
				if len(proxyCPUs[m]) > 0 {
					v += fmt.Sprintf(", proxy CPU %.2f s/GiB", median(proxyCPUs[m]))
				}
				r.line(prefix+"."+m.String(), v)
			}
		}
		return nil
	}
	size := fmt.Sprintf(" (%d MiB in %d KiB messages, median of %d)", total>>20, msgSize>>10, o.relayRuns)
	r.line(prefix+".direct_plain", fmtMBps(median(mbps[relayDirectPlain]))+size)
	r.ratio(prefix+".proxy_plain", fmtMBps(median(mbps[relayProxyPlain])), median(ratios(mbps[relayDirectPlain], mbps[relayProxyPlain])), "direct plain")
	r.ratio(prefix+".direct_tls", fmtMBps(median(mbps[relayDirectTLS])), median(ratios(mbps[relayDirectPlain], mbps[relayDirectTLS])), "direct plain")
	r.ratio(prefix+".proxy_tls", fmtMBps(median(mbps[relayProxyTLS])), median(ratios(mbps[relayDirectTLS], mbps[relayProxyTLS])), "direct tls")
	r.ratio(prefix+".proxy_tls_vs_plain", fmtMBps(median(mbps[relayProxyTLS])), median(ratios(mbps[relayDirectPlain], mbps[relayProxyTLS])), "direct plain")
	r.ratio(prefix+".tcp_forwarder", fmtMBps(median(mbps[relayForward])), median(ratios(mbps[relayDirectPlain], mbps[relayForward])), "direct plain")
	r.ratio(prefix+".proxy_plain_vs_forwarder", fmtMBps(median(mbps[relayProxyPlain])), median(ratios(mbps[relayForward], mbps[relayProxyPlain])), "tcp_forwarder")
	r.line(prefix+".proxy_plain.cpu", fmt.Sprintf("%.2f s of proxy CPU per GiB relayed", median(proxyCPUs[relayProxyPlain])))
	r.line(prefix+".proxy_tls.cpu", fmt.Sprintf("%.2f s of proxy CPU per GiB relayed", median(proxyCPUs[relayProxyTLS])))
	r.line(prefix+".tcp_forwarder.cpu", fmt.Sprintf("%.2f s of CPU per GiB relayed", median(proxyCPUs[relayForward])))
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
