package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"

	"github.com/spiceharness/spiceharness/internal/tail"
)

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

// crashed returns the *ExitError when qemu, once launched, exited
// without being asked to; then it marks every later exit as expected.
// Close starts with it.
func (c *core) crashed(launched bool) error {
	var err error
	select {
	case <-c.exited:
		if e := c.exitErr.(*ExitError); !e.Expected && launched {
			err = e
		}
	default:
	}
	c.expected.Store(true)
	return err
}

// quitOrKill ends a qemu that still runs: QMP quit, up to quitGrace for
// gone to close, then kill (the backend's Kill, which waits).
func (c *core) quitOrKill(gone <-chan struct{}, log *slog.Logger, kill func() error) error {
	select {
	case <-gone:
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), quitTimeout)
	qerr := c.do(ctx, func(m *raw.Monitor) error { return m.Quit() })
	cancel()
	if qerr != nil && !errors.Is(qerr, ErrExited) {
		log.Info("qemu: quit failed, killing", "vm", c.self.String(), "err", qerr)
	}
	select {
	case <-gone:
	case <-time.After(quitGrace):
		log.Info("qemu: still running after quit, killing", "vm", c.self.String())
	}
	return kill()
}

// finishClose marks the VM closed and removes its state dir (unless keep
// or stopping failed). It returns the crash if there was one, else the
// shutdown's error.
func (c *core) finishClose(stateDir string, keep bool, crashed, err error) error {
	c.closed.Store(true)
	if stateDir != "" && !keep && err == nil {
		if rerr := os.RemoveAll(stateDir); rerr != nil {
			err = fmt.Errorf("qemu: remove state dir: %w", rerr)
		}
	}
	if crashed != nil {
		return crashed
	}
	return err
}
