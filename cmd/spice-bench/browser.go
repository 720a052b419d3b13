package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spiceharness/spiceharness/harness"
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
	if _, err := harness.FindChromium(""); err != nil {
		r.line("browser", "skipped: "+err.Error())
		return nil
	}
	if _, err := harness.FindSpiceHTML5(""); err != nil {
		r.line("browser", "skipped: "+err.Error())
		return nil
	}
	progress("booting a VM behind the in-process proxy (its WebSocket listener) and websockify")
	env, err := harness.Up(ctx, harness.VMs(1))
	if err != nil {
		return err
	}
	defer env.Close()
	vm := env.VM(0)
	w, err := harness.StartWebsockify(ctx, harness.WebsockifyOptions{Targets: map[string]string{"bench": vm.Console().HypervisorIP + ":" + fmt.Sprint(vm.Console().InsecurePort)}, Origin: "origin"})
	if err != nil {
		return err
	}
	defer w.Close()
	b, err := harness.StartBrowser(ctx, harness.BrowserOptions{})
	if err != nil {
		return err
	}
	defer b.Close()

	const (
		viaWebsockify = iota
		viaProxy
	)
	names := []string{"websockify", "proxy_ws"}
	endpoint := func(via int) (harness.WebSocketEndpoint, error) {
		if via == viaProxy {
			f, err := env.FetchVV(ctx, harness.WS, vm)
			if err != nil {
				return harness.WebSocketEndpoint{}, err
			}
			return harness.WebSocketEndpointOf(f), nil
		}
		// websockify relays bytes: the password is qemu's ticket, fresh
		// per run (the proxy learns it too: Env.SetTicket).
		t, err := env.SetTicket(ctx, vm)
		if err != nil {
			return harness.WebSocketEndpoint{}, err
		}
		return harness.WebSocketEndpoint{URL: w.URL + "/websockify?token=bench", Password: t, Origin: w.Origin}, nil
	}
	paint := [2][]float64{}
	open := [2][]float64{}
	for round := -1; round < o.browserRounds; round++ {
		for i := range 2 {
			via := (i + max(round, 0)) % 2
			ep, err := endpoint(via)
			if err != nil {
				return err
			}
			start := time.Now()
			p, err := b.Open(ctx, ep)
			if err != nil {
				return fmt.Errorf("%s: %w", names[via], err)
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			first, err := p.WaitPainted(wctx)
			wall := time.Since(start)
			cancel()
			p.Close()
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
	if len(paint[viaProxy]) == 0 {
		return errors.New("no rounds")
	}
	for _, f := range []struct {
		name string
		v    [2][]float64
	}{{"first_paint", paint}, {"open_to_paint", open}} {
		r.line("browser."+f.name+".websockify", fmtMS(median(f.v[viaWebsockify]))+fmt.Sprintf(" (median of %d rounds)", len(f.v[viaWebsockify])))
		r.ratio("browser."+f.name+".proxy_ws", fmtMS(median(f.v[viaProxy])), median(ratios(f.v[viaWebsockify], f.v[viaProxy])), "websockify")
	}
	return nil
}
