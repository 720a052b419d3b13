package qemu

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"

	"github.com/spiceharness/spiceharness/internal/tail"
)

// VM is one running qemu with a SPICE server, whatever started it. Both
// backends (a qemu child process, a libvirt domain) implement it the same
// way; Start picks the backend.
//
// Every method that talks to qemu takes a context, is bounded by
// DefaultQMPTimeout when the context has no deadline, and returns at
// once, with the *ExitError, when qemu exits.
type VM interface {
	// String names the VM for messages: backend, name, pid or domain,
	// accelerator and SPICE address.
	String() string

	// Endpoint is where this VM's SPICE server listens and the current
	// ticket (empty until SetTicket; still the last ticket after
	// ExpireTicket).
	Endpoint() Endpoint

	// SetTicket sets a fresh random ticket and returns it. Clients
	// already connected keep their session; new links need the new
	// ticket. It also lifts an earlier ExpireTicket.
	SetTicket(ctx context.Context) (string, error)
	// RotateTicket sets a fresh random ticket like SetTicket and also
	// disconnects every connected client, so nobody holding the old
	// ticket stays in.
	RotateTicket(ctx context.Context) (string, error)
	// ExpireTicket expires the ticket now: every new link is refused
	// until the next SetTicket or RotateTicket. Connected clients stay.
	ExpireTicket(ctx context.Context) error

	// QuerySpice runs QMP query-spice.
	QuerySpice(ctx context.Context) (SpiceInfo, error)
	// Run runs any QMP command and returns its "return" value. cmd is a
	// command name ("query-status"), a qmp.Command, raw JSON ([]byte or
	// json.RawMessage) or any value that marshals to a QMP command
	// object. QMP errors are *QMPError. Running "quit" makes the exit
	// expected.
	Run(ctx context.Context, cmd any) (json.RawMessage, error)
	// SendKeys sends each key with QMP send-key, one after the other.
	// A key is a QKeyCode ("h", "ret", "spc") or a chord of them joined
	// by "-" ("shift-a", "ctrl-alt-delete").
	SendKeys(ctx context.Context, keys ...string) error

	// Events returns the QMP events seen so far (the last 1024).
	Events() []Event
	// Subscribe returns a subscription to the events that arrive from
	// now on. Subscribe before running the command that causes them.
	Subscribe() *Subscription

	// WaitFor waits for each strategy in turn, bounded only by ctx; it
	// fails fast, with the *ExitError, when qemu exits, and a timeout's
	// error carries the serial log's tail.
	WaitFor(ctx context.Context, s ...Strategy) error
	// WaitSerial is WaitFor(ctx, ForSerial(re)).
	WaitSerial(ctx context.Context, re *regexp.Regexp) error
	// WaitSPICE is WaitFor(ctx, ForSPICE()).
	WaitSPICE(ctx context.Context) error

	// SerialLog is the path of the guest's serial log (COM1) on this
	// host.
	SerialLog() string
	// SerialTail returns the last n lines of the serial log.
	SerialTail(n int) string

	// Exited is closed once qemu has exited, for whatever reason.
	Exited() <-chan struct{}
	// Wait waits for qemu to exit. It returns nil when the exit was
	// asked for (Close, Kill, QMP quit), the *ExitError when it was not,
	// and ctx's error if ctx ends first.
	Wait(ctx context.Context) error
	// Kill kills qemu abruptly (SIGKILL to its process group; on
	// libvirt, virDomainDestroy) and waits until it is gone. The exit
	// counts as expected. For fault injection.
	Kill() error
	// Close shuts qemu down (QMP quit, wait, then SIGKILL and wait) and
	// removes its state dir. It is idempotent and safe on a nil or
	// partially started VM. It returns the *ExitError if qemu had exited
	// unexpectedly before Close, else the shutdown's own error.
	Close() error
}

// SpiceInfo is the answer to query-spice.
type SpiceInfo struct {
	Enabled   bool
	Migrated  bool
	Host      string
	Port      int // 0: no plain port
	TLSPort   int // 0: no TLS port
	Auth      string
	MouseMode string
	Channels  []SpiceChannel
}

// SpiceChannel is one connected SPICE channel as qemu reports it.
type SpiceChannel struct {
	Host         string
	Port         string
	ConnectionID int64
	ChannelType  int64
	ChannelID    int64
	TLS          bool
}

// core is what both backends share: the endpoint, tickets, QMP calls,
// events and waits. A backend sets rn once QMP works and calls exit once
// qemu is gone.
type core struct {
	self       VM // the backend value, for strategies
	accel      Accelerator
	serialPath string
	events     *eventHub

	mu sync.Mutex
	ep Endpoint
	rn runner

	exited     chan struct{}
	exitErr    error // written before exited is closed
	exitCtx    context.Context
	exitCancel context.CancelCauseFunc
	expected   atomic.Bool
	closed     atomic.Bool
}

func newCore(self VM) *core {
	c := &core{self: self, events: newEventHub(), exited: make(chan struct{})}
	c.exitCtx, c.exitCancel = context.WithCancelCause(context.Background())
	return c
}

// exit records qemu's end. err is the *ExitError (Expected set from the
// expected flag). Called once, by the backend.
func (c *core) exit(err *ExitError) {
	err.Expected = c.expected.Load()
	c.exitErr = err
	c.exitCancel(err)
	close(c.exited)
}

func (c *core) setRunner(r runner) {
	c.mu.Lock()
	c.rn = r
	c.mu.Unlock()
}

func (c *core) runner() runner {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rn
}

// deadErr is why calls fail once the VM is closed or qemu is gone; nil
// while it runs.
func (c *core) deadErr() error {
	if c.closed.Load() {
		return fmt.Errorf("%w: %s", ErrClosed, c.self)
	}
	select {
	case <-c.exited:
		return c.exitErr
	default:
		return nil
	}
}

// withExit derives a context that also ends, with the exit error as its
// cause, when qemu exits, and that has a deadline.
func (c *core) withExit(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	var cancelT context.CancelFunc = func() {}
	if _, ok := ctx.Deadline(); !ok && timeout > 0 {
		ctx, cancelT = context.WithTimeout(ctx, timeout)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.exitCtx, func() { cancel(context.Cause(c.exitCtx)) })
	return ctx, func() { stop(); cancel(nil); cancelT() }
}

// do runs fn against QMP with a deadline, returning at once with the exit
// error if qemu exits.
func (c *core) do(ctx context.Context, fn func(m *raw.Monitor) error) error {
	return c.doRaw(ctx, func(ctx context.Context, rn runner) error { return fn(newRaw(ctx, rn)) })
}

// doRaw is do for callers that need the runner itself.
func (c *core) doRaw(ctx context.Context, fn func(ctx context.Context, rn runner) error) error {
	if err := c.deadErr(); err != nil {
		return err
	}
	rn := c.runner()
	if rn == nil {
		return fmt.Errorf("%w: %s: QMP is not connected", ErrExited, c.self)
	}
	ctx, cancel := c.withExit(ctx, DefaultQMPTimeout)
	defer cancel()
	err := fn(ctx, rn)
	if err != nil && errors.Is(err, errMonitorClosed) {
		// The monitor saw qemu go before the process was reaped.
		select {
		case <-c.exited:
		case <-time.After(5 * time.Second):
		}
		if derr := c.deadErr(); derr != nil {
			return derr
		}
	}
	return err
}

func (c *core) Endpoint() Endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ep
}

func (c *core) SetTicket(ctx context.Context) (string, error) {
	return c.setTicket(ctx, "keep")
}

func (c *core) RotateTicket(ctx context.Context) (string, error) {
	return c.setTicket(ctx, "disconnect")
}

// setTicket sets a fresh ticket, then lifts any expiry. In that order the
// VM is never open to an old ticket: between the two calls the new
// ticket exists but is still expired.
func (c *core) setTicket(ctx context.Context, connected string) (string, error) {
	t := newTicket()
	err := c.do(ctx, func(m *raw.Monitor) error {
		if err := m.SetPassword("spice", t, &connected); err != nil {
			return err
		}
		c.mu.Lock()
		c.ep.Ticket = t
		c.mu.Unlock()
		return m.ExpirePassword("spice", "never")
	})
	if err != nil {
		return "", fmt.Errorf("qemu: %s: set ticket: %w", c.self, redact(err, t))
	}
	return t, nil
}

func (c *core) ExpireTicket(ctx context.Context) error {
	err := c.do(ctx, func(m *raw.Monitor) error { return m.ExpirePassword("spice", "now") })
	if err != nil {
		return fmt.Errorf("qemu: %s: expire ticket: %w", c.self, err)
	}
	return nil
}

// TicketLen is the length of the tickets SetTicket makes: 32 characters
// of [A-Za-z0-9] (~190 bits), well under spice-server's 59-byte limit.
const TicketLen = 32

const ticketAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newTicket draws TicketLen characters from crypto/rand without modulo
// bias.
func newTicket() string {
	b := make([]byte, 0, TicketLen)
	var buf [64]byte
	for len(b) < TicketLen {
		rand.Read(buf[:]) // never fails (Go 1.24+)
		for _, x := range buf {
			if x < 248 { // 248 = 4*62: keep the draw unbiased
				b = append(b, ticketAlphabet[x%62])
				if len(b) == TicketLen {
					break
				}
			}
		}
	}
	return string(b)
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func (c *core) QuerySpice(ctx context.Context) (SpiceInfo, error) {
	var info raw.SpiceInfo
	err := c.do(ctx, func(m *raw.Monitor) (err error) {
		info, err = m.QuerySpice()
		return err
	})
	if err != nil {
		return SpiceInfo{}, fmt.Errorf("qemu: %s: query-spice: %w", c.self, err)
	}
	return spiceInfoFrom(info), nil
}

func spiceInfoFrom(r raw.SpiceInfo) SpiceInfo {
	s := SpiceInfo{Enabled: r.Enabled, Migrated: r.Migrated, MouseMode: r.MouseMode.String()}
	if r.Host != nil {
		s.Host = *r.Host
	}
	if r.Port != nil {
		s.Port = int(*r.Port)
	}
	if r.TLSPort != nil {
		s.TLSPort = int(*r.TLSPort)
	}
	if r.Auth != nil {
		s.Auth = *r.Auth
	}
	for _, ch := range r.Channels {
		s.Channels = append(s.Channels, SpiceChannel{
			Host: ch.Host, Port: ch.Port, ConnectionID: ch.ConnectionID,
			ChannelType: ch.ChannelType, ChannelID: ch.ChannelID, TLS: ch.TLS,
		})
	}
	return s
}

func (c *core) Run(ctx context.Context, cmd any) (json.RawMessage, error) {
	var b []byte
	var err error
	switch v := cmd.(type) {
	case string:
		b, err = json.Marshal(qmp.Command{Execute: v})
	case []byte:
		b = v
	case json.RawMessage:
		b = v
	default:
		b, err = json.Marshal(v)
	}
	if err != nil {
		return nil, fmt.Errorf("qemu: %s: QMP command: %w", c.self, err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, fmt.Errorf("qemu: %s: QMP command is not a JSON object: %w", c.self, err)
	}
	if commandName(obj) == "quit" {
		c.expected.Store(true)
	}
	var reply []byte
	err = c.doRaw(ctx, func(ctx context.Context, rn runner) (err error) {
		reply, err = rn.run(ctx, b)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("qemu: %s: %w", c.self, err)
	}
	var r struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return nil, fmt.Errorf("qemu: %s: QMP reply: %w", c.self, err)
	}
	return r.Return, nil
}

func (c *core) SendKeys(ctx context.Context, keys ...string) error {
	chords := make([][]raw.KeyValue, 0, len(keys))
	for _, k := range keys {
		var chord []raw.KeyValue
		for _, name := range strings.Split(k, "-") {
			var code raw.QKeyCode
			if err := json.Unmarshal([]byte(`"`+name+`"`), &code); err != nil || name == "" {
				return fmt.Errorf("qemu: %s: send-key: unknown QKeyCode %q in %q", c.self, name, k)
			}
			chord = append(chord, raw.KeyValueQcode(code))
		}
		chords = append(chords, chord)
	}
	err := c.do(ctx, func(m *raw.Monitor) error {
		for _, chord := range chords {
			if err := m.SendKey(chord, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("qemu: %s: send-key: %w", c.self, err)
	}
	return nil
}

func (c *core) Events() []Event { return c.events.snapshot() }

func (c *core) Subscribe() *Subscription {
	return c.events.subscribe(c.exited, func() error {
		if err := c.deadErr(); err != nil {
			return err
		}
		return ErrExited
	})
}

func (c *core) publish(e Event) { c.events.publish(e) }

func (c *core) SerialLog() string { return c.serialPath }

func (c *core) SerialTail(n int) string { return tail.File(c.serialPath, n) }

func (c *core) Exited() <-chan struct{} { return c.exited }

func (c *core) Wait(ctx context.Context) error {
	select {
	case <-c.exited:
	case <-ctx.Done():
		return ctx.Err()
	}
	if c.exitErr.(*ExitError).Expected {
		return nil
	}
	return c.exitErr
}

func (c *core) WaitFor(ctx context.Context, strategies ...Strategy) error {
	for _, s := range strategies {
		if err := c.waitOne(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func (c *core) waitOne(ctx context.Context, s Strategy) error {
	if err := c.deadErr(); err != nil {
		return fmt.Errorf("qemu: %s: waiting for %s: %w", c.self, s, err)
	}
	wctx, cancel := c.withExit(ctx, 0)
	defer cancel()
	err := s.WaitUntilReady(wctx, c.self)
	if err == nil {
		return nil
	}
	if derr := c.deadErr(); derr != nil {
		return fmt.Errorf("qemu: %s: waiting for %s: %w", c.self, s, derr)
	}
	return fmt.Errorf("qemu: %s: waiting for %s: %w\n  serial log (tail):\n%s", c.self, s, err, indent(c.SerialTail(10)))
}

func (c *core) WaitSerial(ctx context.Context, re *regexp.Regexp) error {
	return c.WaitFor(ctx, ForSerial(re))
}

func (c *core) WaitSPICE(ctx context.Context) error { return c.WaitFor(ctx, ForSPICE()) }
