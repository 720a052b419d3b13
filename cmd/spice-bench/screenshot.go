package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spiceharness/spiceharness/harness"
)

// upLane boots one VM behind an in-process proxy that also serves
// sessions on its plain listener (AllowPlain), so plain and TLS client
// legs can be compared against the same qemu.
func upLane(ctx context.Context) (*harness.Env, error) {
	progress("booting a VM behind the proxy (AllowPlain)")
	return harness.Up(ctx, harness.VMs(1), harness.AllowPlain())
}

type shotMode int

const (
	shotDirect shotMode = iota
	shotPlain
	shotTLS
	nShotModes
)

func (m shotMode) String() string {
	return [...]string{"direct", "proxy_plain", "proxy_tls"}[m]
}

// benchScreenshot times spicy-screenshot (a real spice-gtk client: main
// and display channels, one capture) straight to qemu and through the
// proxy over plain and TLS, interleaved round by round. Only the
// spicy-screenshot process is timed: minting the token and rotating
// qemu's ticket happen outside the clock.
func benchScreenshot(ctx context.Context, r *report, o *options) error {
	env, err := upLane(ctx)
	if err != nil {
		return err
	}
	defer env.Close()
	vm := env.VM(0)
	dir, err := os.MkdirTemp("", "spice-bench-shot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var ref *harness.Image
	differ := 0
	shot := func(m shotMode) (time.Duration, error) {
		var ep harness.Endpoint
		if m == shotDirect {
			// spicy-screenshot takes the password on argv only: give it
			// a ticket that is replaced as soon as it is done.
			tmp, err := env.SetTicket(ctx, vm)
			if err != nil {
				return 0, err
			}
			c := vm.Console()
			ep = harness.Endpoint{Host: c.HypervisorIP, Port: c.InsecurePort, Password: tmp}
		} else {
			f, err := env.FetchVV(ctx, harness.Proxy, vm) // a one-session token
			if err != nil {
				return 0, err
			}
			ep = harness.EndpointOf(f.File)
			if m == shotPlain {
				ep.TLSPort, ep.CAPEM = 0, nil
			} else {
				ep.Port = 0
			}
		}
		start := time.Now()
		img, err := harness.Screenshot(ctx, ep, dir)
		d := time.Since(start)
		if m == shotDirect {
			if _, terr := env.SetTicket(ctx, vm); terr != nil {
				return 0, fmt.Errorf("replacing the capture's ticket: %w", terr)
			}
		}
		if err != nil {
			return 0, fmt.Errorf("%s capture: %w", m, err)
		}
		if ref == nil {
			ref = img
		} else if img.W != ref.W || img.H != ref.H || img.DiffPixels(ref) != 0 {
			differ++
		}
		return d, nil
	}

	times := make([][]float64, nShotModes)
	for round := -1; round < o.shots; round++ { // round -1 warms up
		for i := range nShotModes {
			m := shotMode((int(i) + max(round, 0)) % int(nShotModes))
			d, err := shot(m)
			if err != nil {
				return err
			}
			if round >= 0 {
				times[m] = append(times[m], ms(d))
			}
		}
		if o.verbose && round >= 0 {
			progress("screenshot round %d: direct %.1f, plain %.1f, tls %.1f ms", round, times[0][round], times[1][round], times[2][round])
		}
	}
	r.line("screenshot.direct", fmtMS(median(times[shotDirect]))+fmt.Sprintf(" (median of %d)", o.shots))
	for _, m := range []shotMode{shotPlain, shotTLS} {
		r.ratio("screenshot."+m.String(), fmtMS(median(times[m])), median(ratios(times[shotDirect], times[m])), "direct")
	}
	total := int(nShotModes) * (o.shots + 1)
	r.line("screenshot.identical_pictures", fmt.Sprintf("%d/%d", total-differ, total))
	return nil
}
