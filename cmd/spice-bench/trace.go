package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/proxy"
)

// benchTrace shows where a real client's time goes: it runs
// spicy-screenshot captures in the four modes, interleaved, and takes
// per-step timestamps of each session — on the wire (a packet socket on
// lo: the client's leg and, through the proxy, the backend leg) and
// inside the proxy (proxy.SetTrace) — as milliseconds since the
// spicy-screenshot process was started, medians over the rounds.
//
// Lines are
//
//	trace.CHANNEL.LEG.STEP: direct A | proxy_plain B | proxy_tls C | direct_tls D ms
//
// with LEG "client" (the client's connection as seen on the wire),
// "proxy" (the proxy's own steps) or "backend" (the proxy's connection
// to qemu on the wire); and per mode the phases of the session
// (trace.MODE.PHASE: duration) with their ratio to direct.
func benchTrace(ctx context.Context, r *report, o *options) error {
	l, err := upLane(ctx)
	if err != nil {
		return err
	}
	defer l.Close()
	qemuPorts := map[uint16]bool{uint16(l.port(modeDirect)): true, uint16(l.port(modeDirectTLS)): true}
	var ports []int
	for m := range nModes {
		ports = append(ports, l.port(m))
	}
	sn, err := startSniffer(ports...)
	if err != nil && !errors.Is(err, errNoRaw) {
		return err
	}
	if sn != nil {
		defer sn.Close()
	} else {
		progress("trace: %v: only the proxy's own steps are shown", err)
		r.line("trace.wire", "skipped: "+err.Error())
	}
	var mu sync.Mutex
	var events []proxy.TraceEvent
	l.proxy().SetTrace(func(ev proxy.TraceEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	})
	defer l.proxy().SetTrace(nil)

	// samples[mode][round]: step name → ms since the process started.
	samples := make([][]map[string]float64, nModes)
	var cur map[string]float64
	add := func(name string, start, at time.Time) {
		if _, dup := cur[name]; !at.IsZero() && !dup {
			cur[name] = ms(at.Sub(start))
		}
	}
	_, err = rounds(ctx, o.traceRounds, o.verbose, "trace", func(m mode, round int) (float64, error) {
		cur = map[string]float64{}
		if round >= 0 {
			samples[m] = append(samples[m], cur)
		}
		ep, release, err := l.endpoint(ctx, m)
		if err != nil {
			return 0, err
		}
		if sn != nil {
			sn.take() // the previous session's last segments
		}
		mu.Lock()
		events = nil
		mu.Unlock()
		start := time.Now()
		_, err = l.screenshot(ctx, ep)
		end := time.Now()
		if rerr := release(); err == nil {
			err = rerr
		}
		if err != nil {
			return 0, fmt.Errorf("%s capture: %w", m, err)
		}
		sleepCtx(ctx, o.shotGap)
		add("exit", start, end)
		if sn != nil {
			client := uint16(l.port(m))
			nClient := 0
			for _, c := range conns(sn.take(), func(p uint16) bool { return p == client || qemuPorts[p] }) {
				leg := "client"
				if c.server != client {
					leg = "backend"
				}
				plain := !(leg == "client" && (m == modeTLS || m == modeDirectTLS))
				ch := c.channel()
				if leg == "client" {
					if !plain {
						// A TLS link cannot be read: spice-gtk opens main,
						// then (spicy-screenshot) display.
						ch = [...]uint8{1, 2, 0}[min(nClient, 2)]
					}
					nClient++
				}
				pre := channelName(ch) + "." + leg + "."
				add(pre+"connect", start, c.syn)
				if !plain {
					continue
				}
				st := c.steps()
				add(pre+"link_sent", start, st.linkSent)
				add(pre+"reply", start, st.replyRecv)
				add(pre+"ticket_sent", start, st.ticketSent)
				add(pre+"result", start, st.resultRecv)
				add(pre+"first_to_client", start, st.firstToClient)
				add(pre+"first_to_server", start, st.firstToServer)
			}
		}
		mu.Lock()
		for _, ev := range events {
			if ev.Channel != 0 || ev.Step <= proxy.TraceTLSDone {
				add(channelName(traceChannel(events, ev))+".proxy."+ev.Step.String(), start, ev.At)
			}
		}
		mu.Unlock()
		return ms(end.Sub(start)), nil
	})
	if err != nil {
		return err
	}
	reportTrace(r, samples, o.traceRounds)
	return nil
}

// traceChannel is the channel of ev's connection (its accept and TLS
// steps come before the link message names it).
func traceChannel(events []proxy.TraceEvent, ev proxy.TraceEvent) uint8 {
	if ev.Channel != 0 {
		return uint8(ev.Channel)
	}
	for _, e := range events {
		if e.Conn == ev.Conn && e.Channel != 0 {
			return uint8(e.Channel)
		}
	}
	return 0
}

func channelName(t uint8) string {
	switch t {
	case 1:
		return "main"
	case 2:
		return "display"
	case 3:
		return "inputs"
	case 4:
		return "cursor"
	}
	return fmt.Sprintf("channel%d", t)
}

// traceSteps is the order the steps are printed in.
var traceSteps = []string{
	"client.connect", "proxy.accepted", "proxy.tls_done", "client.link_sent", "proxy.link_read",
	"proxy.reply_sent", "client.reply", "client.ticket_sent", "proxy.ticket_read", "proxy.authorized",
	"backend.connect", "proxy.backend_dialed", "backend.link_sent", "backend.reply", "proxy.backend_reply",
	"backend.ticket_sent", "backend.result", "proxy.backend_result", "proxy.client_result", "client.result",
	"backend.first_to_client", "proxy.first_to_client", "client.first_to_client",
	"client.first_to_server", "proxy.first_to_server", "backend.first_to_server",
}

func reportTrace(r *report, samples [][]map[string]float64, n int) {
	// med is the median of step k over the rounds that saw it (at least
	// half of them).
	med := func(m mode, k string) (float64, bool) {
		var v []float64
		for _, round := range samples[m] {
			if x, ok := round[k]; ok {
				v = append(v, x)
			}
		}
		if len(v) == 0 || len(v) < (n+1)/2 {
			return 0, false
		}
		return median(v), true
	}
	for _, ch := range []string{"main", "display"} {
		for _, st := range traceSteps {
			k := ch + "." + st
			var parts []string
			seen := false
			for m := range nModes {
				if v, ok := med(m, k); ok {
					parts = append(parts, fmt.Sprintf("%s %.2f", m, v))
					seen = true
				} else {
					parts = append(parts, m.String()+" -")
				}
			}
			if seen {
				r.line("trace."+k, strings.Join(parts, " | ")+" ms")
			}
		}
	}
	// The phases of a session from the client's side: per round, then
	// medians, and medians of the per-round ratios to direct.
	phases := []struct{ name, from, to string }{
		// Every mode, TLS ones included (their links cannot be read).
		{"main_connect_to_display_connect", "main.client.connect", "display.client.connect"},
		{"display_connect_to_exit", "display.client.connect", "exit"},
		// Plain modes: the client's link steps.
		{"startup", "", "main.client.connect"},
		{"main_link", "main.client.connect", "main.client.result"},
		{"main_to_display", "main.client.result", "display.client.connect"},
		{"display_link", "display.client.connect", "display.client.result"},
		{"first_message", "display.client.result", "display.client.first_to_client"},
		{"to_exit", "display.client.first_to_client", "exit"},
		{"total", "", "exit"},
	}
	// What starting display's backend link at link time (from its
	// connection id) would have saved: the backend link's dial-to-reply
	// time, overlapped with the client's ticket round trip and the
	// token check, as far as the shorter of the two. Not done: a TCP
	// connect alone is a SPICE_CONNECTED at qemu, so a client refused
	// afterwards would have reached qemu.
	for _, m := range []mode{modePlain, modeTLS} {
		var gain []float64
		for _, round := range samples[m] {
			lr, ok1 := round["display.proxy.link_read"]
			au, ok2 := round["display.proxy.authorized"]
			br, ok3 := round["display.proxy.backend_reply"]
			if ok1 && ok2 && ok3 {
				gain = append(gain, min(au-lr, br-au))
			}
		}
		if len(gain) >= (n+1)/2 {
			r.line(fmt.Sprintf("trace.%s.display_early_link_gain", m), fmtMS(median(gain))+" (not taken: it would reach qemu before the token is checked)")
		}
	}
	for _, ph := range phases {
		dur := make([][]float64, nModes) // by mode and round; NaN when not seen
		for m := range nModes {
			for _, round := range samples[m] {
				to, ok := round[ph.to]
				from := 0.0
				if ph.from != "" {
					var ok2 bool
					from, ok2 = round[ph.from]
					ok = ok && ok2
				}
				d := math.NaN()
				if ok {
					d = to - from
				}
				dur[m] = append(dur[m], d)
			}
		}
		for m := range nModes {
			v := finite(dur[m])
			if len(v) < (n+1)/2 {
				continue
			}
			name := fmt.Sprintf("trace.%s.%s", m, ph.name)
			if m == modeDirect {
				r.line(name, fmtMS(median(v)))
				continue
			}
			rs := finite(ratios(dur[modeDirect], dur[m]))
			if len(rs) < (n+1)/2 {
				r.line(name, fmtMS(median(v)))
				continue
			}
			r.ratio(name, fmtMS(median(v)), median(rs), "direct")
		}
	}
}

// finite drops NaNs.
func finite(xs []float64) []float64 {
	var out []float64
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}
