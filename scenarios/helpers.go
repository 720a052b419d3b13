package scenarios

import (
	"context"
	"errors"
	"regexp"
	"time"

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

// check fails t with msg when err is not nil.
func check(t harness.T, err error, msg string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", msg, err)
	}
}

// wantLinkCode fails t unless err is a *spice.LinkError with code at step.
func wantLinkCode(t harness.T, err error, step string, code spice.LinkErr) {
	t.Helper()
	var le *spice.LinkError
	if !errors.As(err, &le) || le.Code != code || (step != "" && le.Step != step) {
		t.Fatalf("unexpected link outcome (-want +got):\n-%s: %v\n+%v", step, code, err)
	}
}

// spiceConnections counts the SPICE connections qemu accepted so far
// (QMP SPICE_CONNECTED events): what "reached qemu" means.
func spiceConnections(vm *harness.VM) int {
	n := 0
	for _, ev := range vm.Events() {
		if ev.Name == "SPICE_CONNECTED" {
			n++
		}
	}
	return n
}

// settle gives qemu time to report events for connections that might
// have reached it, before a "nothing happened" check.
func settle(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(300 * time.Millisecond):
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
	if _, err := vm.Run(qctx, "query-status"); err != nil {
		t.Fatalf("%s does not answer QMP: %v", vm, err)
	}
}

// openAll links display (waiting for its first draw), inputs and cursor
// on s.
func openAll(ctx context.Context, t harness.T, s *spice.Session) (display, inputs, cursor *spice.Channel) {
	t.Helper()
	var err error
	display, err = s.Open(ctx, spice.ChannelDisplay, 0)
	check(t, err, "display channel")
	check(t, display.InitDisplay(), "DISPLAY_INIT")
	_, _, err = display.WaitFirstDraw(ctx)
	check(t, err, "first draw")
	inputs, err = s.Open(ctx, spice.ChannelInputs, 0)
	check(t, err, "inputs channel")
	cursor, err = s.Open(ctx, spice.ChannelCursor, 0)
	check(t, err, "cursor channel")
	_, err = cursor.WaitFor(ctx, spice.MsgCursorInit)
	check(t, err, "CURSOR_INIT")
	return display, inputs, cursor
}

// waitClosed waits until every channel has ended and returns how long
// the slowest took from start.
func waitClosed(t harness.T, start time.Time, within time.Duration, what string, chans ...*spice.Channel) time.Duration {
	t.Helper()
	var slowest time.Duration
	for _, c := range chans {
		select {
		case <-c.Done():
			slowest = max(slowest, time.Since(start))
		case <-time.After(time.Until(start.Add(within))):
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
