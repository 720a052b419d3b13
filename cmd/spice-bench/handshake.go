package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// sessionChannels are the channels remote-viewer opens on the built-in
// guest's qemu, in the order they are linked here.
var sessionChannels = []spice.ChannelType{spice.ChannelMain, spice.ChannelDisplay, spice.ChannelInputs, spice.ChannelCursor}

// benchHandshake times the Go client's link of each channel (dial, TLS
// when used, link, auth, link result: spice.Dialer.DialChannel) in the
// four modes (qemu's plain port, the proxy's plain and TLS listeners,
// qemu's TLS port), one session per mode per round, modes interleaved.
// For main, direct, this is issue 4's "link + auth latency of a main
// channel".
func benchHandshake(ctx context.Context, r *report, o *options) error {
	l, err := upLane(ctx)
	if err != nil {
		return err
	}
	defer l.Close()

	// lat[mode][channel] in ms
	lat := make([][][]float64, nModes)
	for m := range lat {
		lat[m] = make([][]float64, len(sessionChannels))
	}
	for round := -1; round < o.handshakes; round++ { // round -1 warms up (caps probes)
		for i := range nModes {
			m := mode((int(i) + max(round, 0)) % int(nModes))
			d, err := l.dialer(ctx, m)
			if err != nil {
				return err
			}
			got, err := timeSession(ctx, d)
			if err != nil {
				return fmt.Errorf("%s session: %w", m, err)
			}
			if round >= 0 {
				for c, v := range got {
					lat[m][c] = append(lat[m][c], ms(v))
				}
			}
		}
	}
	for c, t := range sessionChannels {
		for _, q := range []float64{50, 99} {
			base := percentile(lat[modeDirect][c], q)
			name := fmt.Sprintf("handshake.%s.%%s.p%.0f", t, q)
			r.line(fmt.Sprintf(name, "direct"), fmtMS(base))
			for _, m := range []mode{modePlain, modeTLS, modeDirectTLS} {
				v := percentile(lat[m][c], q)
				r.ratio(fmt.Sprintf(name, m), fmtMS(v), v/base, "direct")
			}
		}
	}
	return nil
}

// timeSession links main (connection id 0), reads MAIN_INIT, then links
// display, inputs and cursor with the session id, one after the other,
// timing each link; then closes everything (display only after the
// server answered its DISPLAY_INIT: see spice.Channel.Close).
func timeSession(ctx context.Context, d *spice.Dialer) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out := make([]time.Duration, len(sessionChannels))
	var open []*spice.Channel
	defer func() {
		for i := len(open) - 1; i >= 0; i-- {
			open[i].Close()
		}
	}()
	start := time.Now()
	main, err := d.DialChannel(ctx, 0, spice.ChannelMain, 0)
	if err != nil {
		return nil, err
	}
	out[0] = time.Since(start)
	open = append(open, main)
	msg, err := main.WaitFor(ctx, spice.MsgMainInit)
	if err != nil {
		return nil, fmt.Errorf("waiting for MAIN_INIT: %w", err)
	}
	init, err := spice.ParseMainInit(msg.Body)
	if err != nil {
		return nil, err
	}
	if err := main.Send(spice.MsgcMainAttachChannels, nil); err != nil {
		return nil, err
	}
	for i, t := range sessionChannels[1:] {
		start := time.Now()
		ch, err := d.DialChannel(ctx, init.SessionID, t, 0)
		if err != nil {
			return nil, err
		}
		out[i+1] = time.Since(start)
		open = append(open, ch)
	}
	// The deferred close goes in reverse: cursor, inputs, display
	// (guarded), main. Close errors (a TLS close_notify to a peer that
	// already left) are not link failures.
	return out, nil
}
