package harness

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/qemu"
)

// OpenAll links display (sending DISPLAY_INIT and waiting for its first
// draw), inputs (waiting for INPUTS_INIT) and cursor (waiting for
// CURSOR_INIT) on s: the channels remote-viewer opens after main, each
// proven linked to qemu by qemu's first message on it.
func OpenAll(ctx context.Context, s *spice.Session) (display, inputs, cursor *spice.Channel, err error) {
	if display, err = s.Open(ctx, spice.ChannelDisplay, 0); err != nil {
		return nil, nil, nil, fmt.Errorf("display channel: %w", err)
	}
	if err = display.InitDisplay(); err != nil {
		return nil, nil, nil, fmt.Errorf("DISPLAY_INIT: %w", err)
	}
	if _, _, err = display.WaitFirstDraw(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("first draw: %w", err)
	}
	if inputs, err = s.Open(ctx, spice.ChannelInputs, 0); err != nil {
		return nil, nil, nil, fmt.Errorf("inputs channel: %w", err)
	}
	// qemu's first message on inputs: the channel is linked end to end,
	// not only in the client's view (a proxy may answer a link before
	// qemu did).
	if _, err = inputs.WaitFor(ctx, spice.MsgInputsInit); err != nil {
		return nil, nil, nil, fmt.Errorf("INPUTS_INIT: %w", err)
	}
	if cursor, err = s.Open(ctx, spice.ChannelCursor, 0); err != nil {
		return nil, nil, nil, fmt.Errorf("cursor channel: %w", err)
	}
	if _, err = cursor.WaitFor(ctx, spice.MsgCursorInit); err != nil {
		return nil, nil, nil, fmt.Errorf("CURSOR_INIT: %w", err)
	}
	return display, inputs, cursor, nil
}

// ConnWatch records the SPICE connections one VM's qemu reports (its QMP
// SPICE_CONNECTED events) that happened after its creation, by qemu's own
// timestamps: what "reached qemu" means. Make it before the action under
// test, then call Barrier.
type ConnWatch struct {
	vm    *VM
	sub   *qemu.Subscription
	since time.Time
}

// WatchConnections starts recording vm's SPICE connections. Close it.
func (vm *VM) WatchConnections() *ConnWatch {
	return &ConnWatch{vm: vm, sub: vm.Subscribe(), since: time.Now()}
}

// Close stops recording.
func (w *ConnWatch) Close() { w.sub.Close() }

// Barrier proves what reached qemu since the watch began: it opens a TCP
// connection of its own straight to qemu's plain SPICE port (closed at
// once, before any link message: harmless to spice-server), waits for
// that connection's own SPICE_CONNECTED, and returns the client
// addresses of the SPICE connections qemu reported before it. QMP
// delivers events in order, so any earlier connection was reported
// first: an empty result means nothing reached qemu, with no sleep.
func (w *ConnWatch) Barrier(ctx context.Context) (earlier []string, err error) {
	c := w.vm.Console()
	if c.InsecurePort == 0 {
		return nil, fmt.Errorf("harness: %s has no plain SPICE port for the barrier connection", w.vm)
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(c.HypervisorIP, strconv.Itoa(c.InsecurePort)), 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("harness: barrier connection to %s: %w", w.vm, err)
	}
	mine := strconv.Itoa(conn.LocalAddr().(*net.TCPAddr).Port)
	conn.Close()
	bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		ev, err := w.sub.Next(bctx, qemu.EventSPICEConnected)
		if err != nil {
			return earlier, fmt.Errorf("harness: waiting for the barrier connection's SPICE_CONNECTED on %s: %w", w.vm, err)
		}
		if n := w.sub.Dropped(); n > 0 {
			return earlier, fmt.Errorf("harness: %d QMP events of %s were dropped: the barrier cannot vouch for them", n, w.vm)
		}
		client, _ := ev.Data["client"].(map[string]any)
		host, _ := client["host"].(string)
		port, _ := client["port"].(string)
		if port == mine {
			return earlier, nil
		}
		// qemu stamps each event when it happens; one that happened
		// before the watch began but was read from QMP after it (a
		// loaded machine delays the reader) is not the action's.
		if !ev.Time.IsZero() && ev.Time.Before(w.since) {
			continue
		}
		earlier = append(earlier, net.JoinHostPort(host, port))
	}
}
