package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// inputLinks are the client legs the input section measures on: none
// (loopback) and 20 ms each way (Env.Net's user-space shaping, the same
// for the direct path and the proxy's).
var inputLinks = []struct {
	name string
	link harness.Link
}{
	{"loopback", harness.Link{}},
	{"link20ms", harness.Link{Latency: 20 * time.Millisecond}},
}

// inputModes are the paths compared: qemu's plain port, the proxy's
// plain and TLS listeners (the proxy reaches qemu on its plain port).
var inputModes = []mode{modeDirect, modePlain, modeTLS}

// inputKeys are typed per session and round (letters: the guest echoes
// each in the next cell of its line).
const inputKeys = "abcdefghij"

// inputGap spaces the keys: longer than an echo on loopback, so that
// each key is timed on its own there.
const inputGap = 50 * time.Millisecond

// benchInput times keystrokes from the Go client's KEY_DOWN to the
// display message that draws the guest's echo of it, for each mode on
// each link: every round opens one session per mode (order rotated),
// types inputKeys, and keeps the median of its keys. Figures: each
// mode's median and p99 over every key (the proxied ones with their
// difference to direct's: issue 21's goal is read on these), and for
// each proxied mode the median and p99 over rounds of its round median
// minus direct's, and of their ratio.
func benchInput(ctx context.Context, r *report, o *options) error {
	progress("booting a VM behind the proxy (AllowPlain), client leg through the harness's shaping listener")
	env, err := harness.Up(ctx, harness.VMs(1), harness.AllowPlain())
	if err != nil {
		return err
	}
	defer env.Close()
	vm := env.VM(0)
	for _, ln := range inputLinks {
		if ln.link != (harness.Link{}) {
			env.Net().Set(harness.ClientLeg, ln.link)
		}
		keys := make([][]float64, len(inputModes))        // every key, per mode (ms)
		rounds := make([][]float64, len(inputModes))      // round medians, per mode (ms)
		for round := -1; round < o.inputRounds; round++ { // round -1 warms up
			for i := range inputModes {
				m := inputModes[(i+max(round, 0))%len(inputModes)]
				d, err := inputDialer(ctx, env, vm, m)
				if err != nil {
					return err
				}
				ds, err := typeSession(ctx, d)
				if err != nil {
					return fmt.Errorf("%s %s: %w", ln.name, m, err)
				}
				if round < 0 {
					continue
				}
				var vs []float64
				for _, d := range ds {
					vs = append(vs, ms(d))
				}
				k := indexOf(inputModes, m)
				keys[k] = append(keys[k], vs...)
				rounds[k] = append(rounds[k], median(vs))
			}
		}
		name := "input." + ln.name + ".%s.%s"
		for _, q := range []float64{50, 99} {
			p := fmt.Sprintf("p%.0f", q)
			base := percentile(keys[0], q)
			r.line(fmt.Sprintf(name, "direct", p), fmtMS(base))
			for k, m := range inputModes[1:] {
				v := percentile(keys[k+1], q)
				r.ratio(fmt.Sprintf(name, m, p), fmt.Sprintf("%s (%+.2f ms)", fmtMS(v), v-base), v/base, "direct")
			}
		}
		for k, m := range inputModes[1:] {
			diff := make([]float64, 0, len(rounds[0]))
			for i := range min(len(rounds[0]), len(rounds[k+1])) {
				diff = append(diff, rounds[k+1][i]-rounds[0][i])
			}
			rat := ratios(rounds[0], rounds[k+1])
			r.line(fmt.Sprintf(name, m, "round_diff"), fmt.Sprintf("p50 %+.2f ms, p99 %+.2f ms; ratio p50 %.2fx, p99 %.2fx (%d rounds)",
				percentile(diff, 50), percentile(diff, 99), percentile(rat, 50), percentile(rat, 99), len(diff)))
		}
	}
	return nil
}

func indexOf(ms []mode, m mode) int {
	for i, x := range ms {
		if x == m {
			return i
		}
	}
	return -1
}

// inputDialer is a Go client for m on the lane's current network:
// direct with qemu's ticket (Env.DirectDialer: the same client-leg
// toxics), proxied with a fresh token.
func inputDialer(ctx context.Context, env *harness.Env, vm *harness.VM, m mode) (*spice.Dialer, error) {
	var d *spice.Dialer
	if m == modeDirect {
		var err error
		if d, err = env.DirectDialer(vm); err != nil {
			return nil, err
		}
	} else {
		f, err := env.FetchVV(ctx, harness.Proxy, vm)
		if err != nil {
			return nil, err
		}
		d = harness.Dialer(f.File)
		if m == modePlain {
			d.TLSPort = 0
		} else {
			d.Port = 0
		}
	}
	d.QuickAck = true // the client's own delayed ACKs are not the path's
	return d, nil
}

// typeSession opens a session (display to its first draw, inputs), puts
// the guest on a fresh line (Enter, not timed), types inputKeys one every
// inputGap and returns each key's delay from KEY_DOWN to the first draw
// message that reaches past its cell (qemu may draw two echoes in one
// message). The session is closed.
func typeSession(ctx context.Context, d *spice.Dialer) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := d.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	display, err := s.Open(ctx, spice.ChannelDisplay, 0)
	if err != nil {
		return nil, err
	}
	if err := display.InitDisplay(); err != nil {
		return nil, err
	}
	surface, _, err := display.WaitFirstDraw(ctx)
	if err != nil {
		return nil, err
	}
	sc, err := spice.ParseSurfaceCreate(surface.Body)
	if err != nil {
		return nil, err
	}
	cell := int32(sc.Width / 80) // the guest's 80-column text mode
	inputs, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		return nil, err
	}
	if _, err := inputs.WaitFor(ctx, spice.MsgInputsInit); err != nil {
		return nil, err
	}
	if err := inputs.KeyPress(spice.Scancodes['\n']); err != nil {
		return nil, err
	}
	quiet(ctx, display, 150*time.Millisecond)
	sent := make([]time.Time, len(inputKeys))
	typed := make(chan error, 1)
	go func() {
		start := time.Now()
		for i, k := range inputKeys {
			time.Sleep(time.Until(start.Add(time.Duration(i) * inputGap))) // the pace
			sent[i] = time.Now()
			if err := inputs.KeyPress(spice.Scancodes[k]); err != nil {
				typed <- err
				return
			}
		}
		typed <- nil
	}()
	echoed := make([]time.Time, len(inputKeys))
	first, done := int32(-1), 0
	for done < len(inputKeys) {
		m, err := display.Recv(ctx)
		if err != nil {
			<-typed
			return nil, fmt.Errorf("%d of %d keys echoed: %w", done, len(inputKeys), err)
		}
		if !spice.IsDraw(m.Type) || len(m.Body) < 20 {
			continue
		}
		now := time.Now()
		left, right := int32(binary.LittleEndian.Uint32(m.Body[8:])), int32(binary.LittleEndian.Uint32(m.Body[16:]))
		if first < 0 {
			first = left
		}
		for done < len(inputKeys) && right > first+int32(done+1)*cell {
			echoed[done] = now
			done++
		}
	}
	if err := <-typed; err != nil {
		return nil, err
	}
	out := make([]time.Duration, len(inputKeys))
	for i := range out {
		out[i] = echoed[i].Sub(sent[i])
	}
	return out, nil
}

// quiet reads c until it has been silent for d (at most 2 s).
func quiet(ctx context.Context, c *spice.Channel, d time.Duration) {
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		qctx, cancel := context.WithTimeout(ctx, d)
		_, err := c.Recv(qctx)
		cancel()
		if err != nil {
			return
		}
	}
}
