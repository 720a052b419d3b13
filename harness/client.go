package harness

import (
	"context"
	"regexp"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// ClientWait bounds each wait of a Client (its session's opening, a
// guest text).
const ClientWait = time.Minute

// Client is a SPICE session through the proxy under test, for a test:
// opened with Env.Client, closed when the test ends, and failing the
// test (instead of returning an error) when something does not work.
// Session, Display, Inputs and Cursor are there for anything more.
type Client struct {
	*spice.Session
	Display, Inputs, Cursor *spice.Channel
	// VM is the VM the session is on.
	VM *VM

	t   T
	ctx context.Context
}

// Client opens a session through the proxy under test to the i-th VM
// (0-based), as remote-viewer would: a fresh proxy `.vv`, its main
// channel, then display (until its first draw), inputs and cursor. The
// session is closed when the test ends; a failure ends the test.
//
//	env := harness.Start(t, harness.Exec("./myproxy --sources {sources} …"))
//	c := env.Client(t, 0)
//	c.Type("hello")
//	c.WaitGuest(`READY> hello`)
func (e *Env) Client(t T, i int) *Client {
	t.Helper()
	if i < 0 || i >= len(e.VMs) {
		t.Fatalf("harness: Client(t, %d): the lane has %d VMs (harness.VMs(n) boots more)", i, len(e.VMs))
	}
	ctx := contextOf(t)
	octx, cancel := context.WithTimeout(ctx, ClientWait)
	defer cancel()
	vm := e.VMs[i]
	s, _, err := e.Connect(octx, Proxy, vm)
	if err != nil {
		t.Fatalf("harness: a session through the proxy under test to %s: %v", vm, err)
	}
	t.Cleanup(func() { s.Close() })
	c := &Client{Session: s, VM: vm, t: t, ctx: ctx}
	if c.Display, c.Inputs, c.Cursor, err = OpenAll(octx, s); err != nil {
		t.Fatalf("harness: the channels of the session to %s: %v", vm, err)
	}
	return c
}

// Type types text into the guest through the inputs channel (at most 8
// keys at a time is safe: qemu's PS/2 queue holds 16 scancodes).
func (c *Client) Type(text string) {
	c.t.Helper()
	if err := c.Inputs.Type(text); err != nil {
		c.t.Fatalf("harness: typing %q through the proxy under test: %v", text, err)
	}
}

// WaitGuest waits until the guest's serial output matches re (the test
// guest echoes each key after its "READY> " prompt), failing the test
// with the serial tail after ClientWait.
func (c *Client) WaitGuest(re string) {
	c.t.Helper()
	rx, err := regexp.Compile(re)
	if err != nil {
		c.t.Fatalf("harness: WaitGuest(%q): %v", re, err)
	}
	ctx, cancel := context.WithTimeout(c.ctx, ClientWait)
	defer cancel()
	if err := c.VM.WaitSerial(ctx, rx); err != nil {
		c.t.Fatalf("harness: waiting for %q on %s's serial output: %v\nserial tail:\n%s", re, c.VM, err, c.VM.SerialTail(5))
	}
}

// contextOf is t's context when it has one (testing.T's ends with the
// test; harness run's on Ctrl-C), else the background.
func contextOf(t T) context.Context {
	if c, ok := t.(interface{ Context() context.Context }); ok {
		return c.Context()
	}
	return context.Background()
}
