package proxy_test

import (
	"bytes"
	"context"
	"sort"
	"testing"
	"time"
)

// BenchmarkTunnelScreenshot times whole spicy-screenshot processes (a
// real spice-gtk client: main and display channels, one capture) straight
// to qemu and through the CONNECT listener, on the plain and the TLS
// port, interleaved round by round (the order rotates), and reports the
// median of the per-round ratios tunnel/direct. One round is one
// iteration: run it with -benchtime 21x or more. spicy-screenshot keeps
// one HOME for the whole run (a fresh one costs ~140 ms per capture).
//
//	go test -run '^$' -bench BenchmarkTunnelScreenshot -benchtime 21x ./proxy
func BenchmarkTunnelScreenshot(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	q := startQemuTunnel(b, ctx)
	host := q.sign(b)
	modes := []struct {
		name string
		shot shot
	}{
		{"direct_plain", shot{host: "127.0.0.1", port: q.con.InsecurePort}},
		{"tunnel_plain", shot{host: host, port: q.con.InsecurePort, proxyURL: q.proxyURL()}},
		{"direct_tls", shot{host: "127.0.0.1", port: q.con.SecurePort, secure: true}},
		{"tunnel_tls", shot{host: host, port: q.con.SecurePort, secure: true, proxyURL: q.proxyURL()}},
	}
	var ref []byte
	round := func(r int) []time.Duration {
		took := make([]time.Duration, len(modes))
		for i := range modes {
			m := (i + r) % len(modes)
			if time.Until(q.hostExpires) < 5*time.Second {
				host = q.sign(b)
				modes[1].shot.host, modes[3].shot.host = host, host
			}
			img, d, err := q.timedCapture(ctx, modes[m].shot)
			if err != nil {
				b.Fatal(err)
			}
			if ref == nil {
				ref = img
			} else if !bytes.Equal(img, ref) {
				b.Fatalf("%s: the picture differs from the first capture", modes[m].name)
			}
			took[m] = d
		}
		return took
	}
	round(0) // warm-up: page cache, qemu's first client
	var plain, tls, direct []float64
	b.ResetTimer()
	for r := range b.N {
		took := round(r)
		direct = append(direct, float64(took[0])/1e6)
		plain = append(plain, float64(took[1])/float64(took[0]))
		tls = append(tls, float64(took[3])/float64(took[2]))
	}
	b.ReportMetric(median(direct), "direct_ms")
	b.ReportMetric(median(plain), "tunnel/direct_plain")
	b.ReportMetric(median(tls), "tunnel/direct_tls")
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
