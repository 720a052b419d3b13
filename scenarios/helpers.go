package scenarios

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"regexp"
	"strconv"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// Programs scenarios may need, with their Debian packages.
const (
	needScreenshot   = "spicy-screenshot:spice-client-gtk"
	needRemoteViewer = "remote-viewer:virt-viewer"
	needXvfb         = "Xvfb:xvfb"
	needXdotool      = "xdotool:xdotool"
	needImport       = "import:imagemagick"
)

// linkOutcome is what a link ended with, for diffs.
type linkOutcome struct {
	Step string
	Code spice.LinkErr
}

// wantLinkCode fails t unless err is a *spice.LinkError with code at step
// ("" matches any step).
func wantLinkCode(t harness.T, err error, step string, code spice.LinkErr) {
	t.Helper()
	var le *spice.LinkError
	require.ErrorAs(t, err, &le, "want a refused link (%s at %s), got a different outcome", code, step)
	got := linkOutcome{Step: le.Step, Code: le.Code}
	want := linkOutcome{Step: step, Code: code}
	if step == "" {
		want.Step = got.Step
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("unexpected link outcome (-want +got):\n%s\nerror: %v", d, err)
	}
}

// wantRefused fails t unless err says the proxy refused the link with a
// SPICE link error (any code but OK, in the reply or as the link result),
// or a CONNECT proxy refused the tunnel with an HTTP error status, or a
// WebSocket gateway refused the upgrade or sent a close frame: what
// clients show as an error instead of hanging. A proxy that hangs or
// closes without an answer is no refusal. It returns the error
// for logs.
func wantRefused(t harness.T, err error, what string) *spice.LinkError {
	t.Helper()
	var le *spice.LinkError
	refused := errors.As(err, &le) && le.Code != spice.LinkOK
	if !refused && le != nil && le.Step == spice.StepProxy {
		_, refused = proxyRefusal(err)
	}
	if !refused && le != nil {
		// A WebSocket gateway's answer: an HTTP error before the upgrade,
		// or a close frame (spice-html5 shows either at once).
		var we *spice.WebSocketError
		code, _ := spice.WebSocketCloseStatus(err)
		refused = (errors.As(err, &we) && we.Status >= 400) || code >= 0
	}
	if !refused {
		t.Fatalf("%s: want a SPICE link error (a non-zero link reply or result), a CONNECT proxy's error status "+
			"or a WebSocket gateway's refusal (an HTTP error status, a close frame), got %v", what, err)
	}
	return le
}

// proxyRefusal is err's CONNECT proxy answer when it is an HTTP error
// status (400 or more).
func proxyRefusal(err error) (*spice.ProxyError, bool) {
	var pe *spice.ProxyError
	return pe, errors.As(err, &pe) && pe.Status >= 400
}

// nothingReached ends a negative check with a positive barrier: it
// connects straight to each watched qemu and waits for that connection's
// own SPICE_CONNECTED event, then fails t if any connection was reported
// before it, i.e. since the watch began.
func nothingReached(ctx context.Context, t harness.T, what string, ws ...*harness.ConnWatch) {
	t.Helper()
	for _, w := range ws {
		earlier, err := w.Barrier(ctx)
		require.NoError(t, err, "barrier after %s", what)
		if len(earlier) != 0 {
			t.Errorf("%s reached qemu: %d SPICE connection(s) from %v", what, len(earlier), earlier)
		}
	}
}

// waitSerial waits for re on vm's serial log.
func waitSerial(ctx context.Context, t harness.T, vm *harness.VM, re string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := vm.WaitSerial(wctx, regexp.MustCompile(re)); err != nil {
		t.Fatalf("waiting for %q on %s's serial log: %v\nserial tail:\n%s", re, vm, err, vm.SerialTail(5))
	}
}

// alive fails t unless qemu still answers QMP.
func alive(ctx context.Context, t harness.T, vm *harness.VM) {
	t.Helper()
	select {
	case <-vm.Exited():
		t.Fatalf("%s died: %v", vm, vm.Wait(ctx))
	default:
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := vm.Run(qctx, "query-status")
	require.NoError(t, err, "%s does not answer QMP", vm)
}

// survives fails t if vm exits within d. spice-server crashes on a bad
// display close "immediately or about a second later", from a worker
// timer that no QMP event announces: watching the process for that long
// is the only check there is (a wait on qemu's exit, not a blind sleep).
func survives(ctx context.Context, t harness.T, vm *harness.VM, d time.Duration) {
	t.Helper()
	select {
	case <-vm.Exited():
		t.Fatalf("%s died: %v", vm, vm.Wait(ctx))
	case <-ctx.Done():
		t.Fatalf("waiting on %s: %v", vm, context.Cause(ctx))
	case <-time.After(d): // no event announces "it will not crash now" (see above)
	}
	alive(ctx, t, vm)
}

// openAll links display (waiting for its first draw), inputs and cursor
// on s.
func openAll(ctx context.Context, t harness.T, s *spice.Session) (display, inputs, cursor *spice.Channel) {
	t.Helper()
	display, inputs, cursor, err := harness.OpenAll(ctx, s)
	require.NoError(t, err, "open display, inputs and cursor")
	return display, inputs, cursor
}

// waitClosed waits until every channel has ended and returns how long
// the slowest took from start; it fails t after within.
func waitClosed(t harness.T, start time.Time, within time.Duration, what string, chans ...*spice.Channel) time.Duration {
	t.Helper()
	// The closes are the events waited on; the timer is only the bound
	// that fails a proxy leaving a channel open.
	bound := time.NewTimer(time.Until(start.Add(within)))
	defer bound.Stop()
	var slowest time.Duration
	for _, c := range chans {
		select {
		case <-c.Done():
			slowest = max(slowest, time.Since(start))
		case <-bound.C:
			t.Fatalf("%s still open %v after %s", c.ID, within, what)
		}
	}
	return slowest
}

// wantOpen fails t if any channel has already ended.
func wantOpen(t harness.T, while string, chans ...*spice.Channel) {
	t.Helper()
	for _, c := range chans {
		select {
		case <-c.Done():
			t.Fatalf("%s of the live session closed %s: %v", c.ID, while, c.Err())
		default:
		}
	}
}

// directDialer links straight to vm's qemu with its current ticket: the
// reference path, without the proxy under test or its API.
func directDialer(vm *harness.VM) *spice.Dialer {
	c := vm.Console()
	return &spice.Dialer{Host: c.HypervisorIP, Port: c.InsecurePort, Password: c.Ticket}
}

// dialLink opens the raw connection a client of f's `.vv` would (TLS when
// it has a tls-port, with its CA and host-subject; else plain).
func dialLink(ctx context.Context, f *harness.VVResponse) (net.Conn, error) {
	d := harness.DialerFor(f)
	var nd net.Dialer
	if f.TLSPort != 0 {
		c, err := nd.DialContext(ctx, "tcp", net.JoinHostPort(f.Host, strconv.Itoa(f.TLSPort)))
		if err != nil {
			return nil, err
		}
		tc := tls.Client(c, spice.TLSConfig(d.CA, f.Host, f.HostSubject))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
	return nd.DialContext(ctx, "tcp", net.JoinHostPort(f.Host, strconv.Itoa(f.Port)))
}

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// keepTyping types text on inputs every 100 ms until stop is closed, then
// sends nil on the returned channel, or the first error as soon as
// typing fails.
func keepTyping(inputs *spice.Channel, text string, stop <-chan struct{}) <-chan error {
	typed := make(chan error, 1)
	go func() {
		// Pacing, not waiting: the live load a scenario keeps up while
		// something else happens.
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				typed <- nil
				return
			case <-tick.C:
			}
			if err := inputs.Type(text); err != nil {
				typed <- err
				return
			}
		}
	}()
	return typed
}
