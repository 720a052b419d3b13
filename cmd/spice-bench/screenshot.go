package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// benchScreenshot times whole spicy-screenshot processes (a real
// spice-gtk client: main and display channels, one capture), as a user
// with the credentials in hand would run them, in four modes interleaved
// round by round in a rotating order: qemu's plain port, the proxy's
// plain and TLS listeners, and qemu's own TLS port (the TLS floor).
// Credentials are fetched outside the clock. Every capture shares the
// process's client home, as a user's runs share theirs, so spice-gtk's
// caches (GStreamer's registry) are warm after the warm-up round.
func benchScreenshot(ctx context.Context, r *report, o *options) error {
	l, err := upLane(ctx)
	if err != nil {
		return err
	}
	defer l.Close()

	var ref *picture
	differ := 0
	qemu := l.qemuPid()
	var cpu [nModes][3]time.Duration // client, qemu, this process (proxy and bench)
	counted := [nModes]int{}
	shot := func(m mode, round int) (time.Duration, error) {
		self, child, q := procCPU(os.Getpid()), childrenCPU(os.Getpid()), procCPU(qemu)
		ep, release, err := l.endpoint(ctx, m)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		img, err := l.screenshot(ctx, ep)
		d := time.Since(start)
		if rerr := release(); rerr != nil {
			return 0, fmt.Errorf("replacing the capture's ticket: %w", rerr)
		}
		if err != nil {
			return 0, fmt.Errorf("%s capture: %w", m, err)
		}
		// Each capture starts on a lane at rest, as a user's would:
		// whatever the last one left to do (qemu's teardown, the
		// proxy's key pool top-up) happens in the gap, and its CPU time
		// is counted with the capture that caused it.
		sleepCtx(ctx, o.shotGap)
		if round >= 0 {
			cpu[m][0] += childrenCPU(os.Getpid()) - child
			cpu[m][1] += procCPU(qemu) - q
			cpu[m][2] += procCPU(os.Getpid()) - self
			counted[m]++
		}
		if ref == nil {
			ref = img
		} else if img.W != ref.W || img.H != ref.H || img.DiffPixels(ref) != 0 {
			differ++
		}
		return d, nil
	}

	times, err := rounds(ctx, o.shots, o.verbose, "screenshot", func(m mode, round int) (float64, error) {
		d, err := shot(m, round)
		return ms(d), err
	})
	if err != nil {
		return err
	}
	reportModes(r, "screenshot", times, o.shots)
	for m := range nModes {
		if counted[m] == 0 {
			continue
		}
		per := func(d time.Duration) string { return fmtMS(ms(d) / float64(counted[m])) }
		r.line("screenshot."+m.String()+".cpu", fmt.Sprintf("client %s, qemu %s, proxy+bench %s per capture (mean; /proc, 10 ms ticks)",
			per(cpu[m][0]), per(cpu[m][1]), per(cpu[m][2])))
	}
	total := int(nModes) * (o.shots + 1)
	r.line("screenshot.identical_pictures", fmt.Sprintf("%d/%d", total-differ, total))
	return nil
}

// rounds runs f once per mode per round, n rounds after one warm-up
// round that is not counted, the order of the modes rotating round by
// round, and returns the values by mode and round. f learns the round
// (-1: the warm-up).
func rounds(ctx context.Context, n int, verbose bool, what string, f func(m mode, round int) (float64, error)) ([][]float64, error) {
	vals := make([][]float64, nModes)
	for round := -1; round < n; round++ {
		for i := range nModes {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			m := mode((int(i) + max(round, 0)) % int(nModes))
			v, err := f(m, round)
			if err != nil {
				return nil, err
			}
			if round >= 0 {
				vals[m] = append(vals[m], v)
			}
		}
		if verbose && round >= 0 {
			progress("%s round %d: direct %.1f, proxy plain %.1f, proxy tls %.1f, direct tls %.1f ms", what, round,
				vals[modeDirect][round], vals[modePlain][round], vals[modeTLS][round], vals[modeDirectTLS][round])
		}
	}
	return vals, nil
}

// reportModes prints the median of each mode and the median of the
// per-round ratios against direct plain, and proxy TLS against qemu's
// own TLS port.
func reportModes(r *report, name string, vals [][]float64, n int) {
	r.line(name+".direct", fmtMS(median(vals[modeDirect]))+fmt.Sprintf(" (median of %d rounds)", n))
	for _, m := range []mode{modePlain, modeTLS, modeDirectTLS} {
		r.ratio(name+"."+m.String(), fmtMS(median(vals[m])), median(ratios(vals[modeDirect], vals[m])), "direct")
	}
	r.ratio(name+".proxy_tls_vs_direct_tls", fmtMS(median(vals[modeTLS])), median(ratios(vals[modeDirectTLS], vals[modeTLS])), "direct_tls")
}
