package main

import (
	"context"
	"errors"
	"fmt"
)

// benchBrowser times spice-html5 in headless Chromium from its connect
// to the first painted canvas (the page's own clock: the first draw that
// leaves the primary surface not one flat colour), through the
// in-process proxy's WebSocket listener and through Debian's websockify
// straight in front of the same qemu, interleaved round by round in a
// rotating order. One Chromium serves the section (its start is outside
// the clock); each run is a new tab, closed before the next, since qemu
// serves one client at a time. open_to_paint adds the page's own load
// (the harness serving spice-html5's modules) to the figure.
func benchBrowser(ctx context.Context, r *report, o *options) error {
	l, skip, err := upBrowserLane(ctx)
	if skip != "" {
		r.line("browser", "skipped: "+skip)
		return nil
	}
	if err != nil {
		return err
	}
	defer l.Close()
	names := []string{"websockify", "proxy_ws"}
	paint := [2][]float64{}
	open := [2][]float64{}
	for round := -1; round < o.browserRounds; round++ {
		for i := range 2 {
			via := (i + max(round, 0)) % 2
			first, wall, err := l.firstPaint(ctx, via == 1)
			if err != nil {
				return fmt.Errorf("%s: %w", names[via], err)
			}
			if round >= 0 {
				paint[via] = append(paint[via], ms(first))
				open[via] = append(open[via], ms(wall))
			}
			if o.verbose {
				progress("browser round %d %s: first paint %.0f ms, open to paint %.0f ms", round, names[via], ms(first), ms(wall))
			}
			sleepCtx(ctx, o.shotGap)
		}
	}
	if len(paint[1]) == 0 {
		return errors.New("no rounds")
	}
	for _, f := range []struct {
		name string
		v    [2][]float64
	}{{"first_paint", paint}, {"open_to_paint", open}} {
		r.line("browser."+f.name+".websockify", fmtMS(median(f.v[0]))+fmt.Sprintf(" (median of %d rounds)", len(f.v[0])))
		r.ratio("browser."+f.name+".proxy_ws", fmtMS(median(f.v[1])), median(ratios(f.v[0], f.v[1])), "websockify")
	}
	return nil
}
