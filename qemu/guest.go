package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spiceharness/spiceharness/internal/poll"
	"github.com/spiceharness/spiceharness/qemu/guestproto"
)

// ForAgentReady waits until the Linux guest's agent has printed its
// ready event (drivers loaded, devices found) on the serial console.
func ForAgentReady() Strategy { return agentEventStrategy{typ: guestproto.TypeReady} }

type agentEventStrategy struct{ typ string }

func (s agentEventStrategy) String() string { return "Linux guest agent event type=" + s.typ }

func (s agentEventStrategy) WaitUntilReady(ctx context.Context, vm VM) error {
	r := &eventReader{f: follower{path: vm.SerialLog()}}
	defer r.close()
	_, err := r.wait(ctx, func(e guestproto.Event) bool { return e.Type == s.typ })
	return err
}

// eventReader parses agent events out of a growing serial log. Lines
// that are not events (kernel messages) are skipped.
type eventReader struct {
	f      follower
	off    int // bytes of f.buf already split into lines
	events []guestproto.Event
}

func (r *eventReader) close() { r.f.close() }

// poll appends the complete lines that arrived.
func (r *eventReader) poll() error {
	if err := r.f.poll(); err != nil {
		return err
	}
	if r.off > len(r.f.buf) { // truncated: qemu relaunched
		r.off, r.events = 0, nil
	}
	for {
		nl := strings.IndexByte(string(r.f.buf[r.off:]), '\n')
		if nl < 0 {
			return nil
		}
		line := string(r.f.buf[r.off : r.off+nl])
		r.off += nl + 1
		if ev, err := guestproto.Parse(line); err == nil {
			r.events = append(r.events, ev)
		}
	}
}

// wait returns the first event since boot that match accepts.
func (r *eventReader) wait(ctx context.Context, match func(guestproto.Event) bool) (guestproto.Event, error) {
	var found guestproto.Event
	next := 0
	err := poll.Until(ctx, pollInterval, func(context.Context) error {
		if err := r.poll(); err != nil {
			return err
		}
		for ; next < len(r.events); next++ {
			if match(r.events[next]) {
				found = r.events[next]
				return nil
			}
		}
		return errors.New("no matching event yet")
	})
	return found, err
}

// ErrNoControlPort: DialGuest was given a VM that does not boot the
// Linux guest (no LinuxGuest option), or one on a backend without it.
var ErrNoControlPort = errors.New("qemu: VM has no Linux guest control port")

// CommandError is an agent's refusal of a command (its ack said
// ok=false).
type CommandError struct {
	Command guestproto.Command
	Ack     guestproto.Event
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("qemu: guest agent refused %s: %s", e.Command, e.Ack.Value("err"))
}

// Guest talks to the Linux guest's agent: commands over the control
// port, events from the serial console. Make one with DialGuest once
// ForAgentReady has passed; Close it before the VM.
type Guest struct {
	vm   VM
	conn net.Conn
	ids  atomic.Int64

	mu sync.Mutex // serialises writes to conn
}

// DialGuest connects to the agent's control port of a VM started with
// LinuxGuest.
func DialGuest(ctx context.Context, vm VM) (*Guest, error) {
	cs, ok := vm.(interface{ ControlSocket() string })
	if !ok || cs.ControlSocket() == "" {
		return nil, fmt.Errorf("%w: %s", ErrNoControlPort, vm)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", cs.ControlSocket())
	if err != nil {
		return nil, fmt.Errorf("qemu: %s: control port: %w", vm, err)
	}
	return &Guest{vm: vm, conn: conn}, nil
}

// Close closes the control connection (the VM keeps running).
func (g *Guest) Close() error {
	if g == nil {
		return nil
	}
	return g.conn.Close()
}

// Command sends one command (name and alternating keys and values) and
// waits for its ack, which it returns. An ack with ok=false is a
// *CommandError.
func (g *Guest) Command(ctx context.Context, name string, kv ...string) (guestproto.Event, error) {
	if len(kv)%2 != 0 {
		return guestproto.Event{}, fmt.Errorf("qemu: guest command %s: odd number of key/value strings", name)
	}
	cmd, err := newCommand(name, g.ids.Add(1), kv)
	if err != nil {
		return guestproto.Event{}, err
	}
	g.mu.Lock()
	_, err = g.conn.Write([]byte(cmd.String() + "\n"))
	g.mu.Unlock()
	if err != nil {
		return guestproto.Event{}, fmt.Errorf("qemu: %s: guest command %s: %w", g.vm, name, err)
	}
	id := strconv.FormatInt(cmd.ID, 10)
	ack, err := g.WaitEvent(ctx, guestproto.TypeAck, func(e guestproto.Event) bool {
		return e.Value("id") == id && e.Value("cmd") == name
	})
	if err != nil {
		return ack, fmt.Errorf("qemu: guest command %s: %w", cmd, err)
	}
	if ack.Value("ok") != "true" {
		return ack, &CommandError{Command: cmd, Ack: ack}
	}
	return ack, nil
}

func newCommand(name string, id int64, kv []string) (cmd guestproto.Command, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("qemu: guest command %s: %v", name, p)
		}
	}()
	return guestproto.NewCommand(name, id, kv...), nil
}

// WaitEvent waits for the first event since boot of type typ ("": any
// type) that match accepts (nil accepts any). It fails fast when qemu exits; a timeout's
// error carries the serial log's tail. To wait only for events after
// another one, compare T: e.T > earlier.T.
func (g *Guest) WaitEvent(ctx context.Context, typ string, match func(guestproto.Event) bool) (guestproto.Event, error) {
	var found guestproto.Event
	err := g.vm.WaitFor(ctx, eventMatch{typ: typ, match: match, out: &found})
	return found, err
}

// Events returns every agent event printed so far.
func (g *Guest) Events() ([]guestproto.Event, error) {
	r := &eventReader{f: follower{path: g.vm.SerialLog()}}
	defer r.close()
	err := r.poll()
	return r.events, err
}

type eventMatch struct {
	typ   string
	match func(guestproto.Event) bool
	out   *guestproto.Event
}

func (s eventMatch) String() string {
	if s.typ == "" {
		return "Linux guest agent event of any type"
	}
	return "Linux guest agent event type=" + s.typ
}

func (s eventMatch) WaitUntilReady(ctx context.Context, vm VM) error {
	r := &eventReader{f: follower{path: vm.SerialLog()}}
	defer r.close()
	ev, err := r.wait(ctx, func(e guestproto.Event) bool {
		return (s.typ == "" || e.Type == s.typ) && (s.match == nil || s.match(e))
	})
	if err == nil {
		*s.out = ev
	}
	return err
}
