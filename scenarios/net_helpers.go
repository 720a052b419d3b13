package scenarios

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// echoer is a session's display and inputs, for timing keys from the
// keystroke to the display message that draws its echo.
type echoer struct {
	name            string
	s               *spice.Session
	display, inputs *spice.Channel
	cell            int32 // a text cell's width in pixels
}

// openEchoer links main, display (first draw seen) and inputs with d.
// The Go client acknowledges every read at once (QuickAck), so its own
// delayed ACKs never hold up a sender: what is timed is the path.
func openEchoer(ctx context.Context, name string, d *spice.Dialer) (*echoer, error) {
	d.QuickAck = true
	s, err := d.Connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: session: %w", name, err)
	}
	e := &echoer{name: name, s: s}
	var surface spice.Message
	if e.display, err = s.Open(ctx, spice.ChannelDisplay, 0); err == nil {
		if err = e.display.InitDisplay(); err == nil {
			surface, _, err = e.display.WaitFirstDraw(ctx)
		}
	}
	if err == nil {
		var sc spice.SurfaceCreate
		if sc, err = spice.ParseSurfaceCreate(surface.Body); err == nil {
			// The guest's 80-column text mode: 720 pixels (9 per cell).
			e.cell = int32(sc.Width / 80)
		}
	}
	if err == nil {
		if e.inputs, err = s.Open(ctx, spice.ChannelInputs, 0); err == nil {
			_, err = e.inputs.WaitFor(ctx, spice.MsgInputsInit)
		}
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: display and inputs: %w", name, err)
	}
	return e, nil
}

func (e *echoer) Close() { e.s.Close() }

// echoKeys are the keys timed: letters, each echoed by the guest in the
// next cell of its line (the guest hides the cursor, so nothing else
// draws).
const echoKeys = "abcdefghijklmnopqrstuvwxyz"

// drawBox is the bounding box of a draw message (its SpiceMsgDisplayBase:
// surface id, then the box).
func drawBox(m spice.Message) (left, right int32, ok bool) {
	if len(m.Body) < 20 {
		return 0, 0, false
	}
	return int32(binary.LittleEndian.Uint32(m.Body[8:])), int32(binary.LittleEndian.Uint32(m.Body[16:])), true
}

// typeTimed types keys at a steady pace, one every gap (a fast typist,
// or a paste), and returns each key's delay from its KEY_DOWN to the
// display message that draws its echo. The guest echoes key i in the
// i-th cell after the first key's: a draw whose box reaches past the
// right edge of a key's cell has drawn that key (qemu may draw two
// echoes in one message). The keys must fit on the guest's line.
func (e *echoer) typeTimed(ctx context.Context, keys string, gap time.Duration) ([]time.Duration, error) {
	drain(e.display)
	sent := make([]time.Time, len(keys))
	echoed := make([]time.Time, len(keys))
	typed := make(chan error, 1)
	go func() {
		start := time.Now()
		for i, k := range keys {
			if d := time.Until(start.Add(time.Duration(i) * gap)); d > 0 {
				time.Sleep(d) // the typist's pace
			}
			sc, ok := spice.Scancodes[k]
			if !ok {
				typed <- fmt.Errorf("no scancode for %q", k)
				return
			}
			sent[i] = time.Now()
			if err := e.inputs.Send(spice.MsgcInputsKeyDown, spice.MarshalKey(spice.ScancodeDown(sc))); err != nil {
				typed <- fmt.Errorf("%s: key down: %w", e.name, err)
				return
			}
			// Released half a gap later, as a typist's finger.
			time.Sleep(time.Until(sent[i].Add(gap / 2)))
			if err := e.inputs.Send(spice.MsgcInputsKeyUp, spice.MarshalKey(spice.ScancodeUp(sc))); err != nil {
				typed <- fmt.Errorf("%s: key up: %w", e.name, err)
				return
			}
		}
		typed <- nil
	}()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	first, done := int32(-1), 0
	for done < len(keys) {
		m, err := e.display.Recv(wctx)
		if err != nil {
			<-typed
			return nil, fmt.Errorf("%s: %d of %d keys echoed on the display: %w", e.name, done, len(keys), err)
		}
		left, right, ok := drawBox(m)
		if !spice.IsDraw(m.Type) || !ok {
			continue
		}
		now := time.Now()
		if first < 0 {
			first = left
		}
		for done < len(keys) && right > first+int32(done+1)*e.cell {
			echoed[done] = now
			done++
		}
	}
	if err := <-typed; err != nil {
		return nil, err
	}
	out := make([]time.Duration, len(keys))
	for i := range keys {
		out[i] = echoed[i].Sub(sent[i])
	}
	return out, nil
}

// settle waits until the display has been quiet for quiet (bounded by
// within): the last key's draws are all in.
func (e *echoer) settle(ctx context.Context, quiet, within time.Duration) {
	end := time.Now().Add(within)
	for time.Now().Before(end) {
		qctx, cancel := context.WithTimeout(ctx, quiet)
		_, err := e.display.Recv(qctx)
		cancel()
		if err != nil {
			return
		}
	}
}

// drain drops the messages queued on c.
func drain(c *spice.Channel) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for {
		if _, err := c.Recv(done); err != nil {
			return
		}
	}
}

// median of ds (0 for none).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// ms formats d in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// proxyEchoer opens an echoer on vm through the proxy under test.
func proxyEchoer(ctx context.Context, env *harness.Env, vm *harness.VM) (*echoer, error) {
	f, err := env.FetchVV(ctx, harness.Proxy, vm)
	if err != nil {
		return nil, fmt.Errorf("proxy .vv of %s: %w", vm, err)
	}
	return openEchoer(ctx, "through the proxy", harness.DialerFor(f))
}

// directEchoer opens an echoer straight to vm's qemu, through the same
// network conditions as the proxy's path (Env.DirectDialer).
func directEchoer(ctx context.Context, env *harness.Env, vm *harness.VM) (*echoer, error) {
	d, err := env.DirectDialer(vm)
	if err != nil {
		return nil, err
	}
	return openEchoer(ctx, "direct", d)
}
