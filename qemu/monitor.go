package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"github.com/digitalocean/go-qemu/qmp/raw"
)

// Why not qmp.NewSocketMonitor: go-qemu's SocketMonitor turns every QMP
// error into errors.New(desc), dropping the class; its Run has no
// deadline and matches replies to commands by order, so a command
// abandoned on timeout would hand its late reply to the next command;
// and its reader blocks forever on an unbuffered events channel once
// Events was called and the reader stopped. socketMonitor below is a
// small qmp.Monitor without those traps, and qmp/raw's typed calls run
// on top of it unchanged (see rawMonitor).

// runner runs one QMP command (JSON bytes) and returns qemu's whole
// reply object; a QMP error comes back as *QMPError.
type runner interface {
	run(ctx context.Context, cmd []byte) ([]byte, error)
	close() error
}

// socketMonitor speaks QMP on a connection to qemu's monitor. Commands
// carry an "id", so replies are matched by id and any number of callers
// may run commands at once; a reply whose caller gave up is dropped.
type socketMonitor struct {
	conn    net.Conn
	onEvent func(Event) // called by the reader; must not block

	// Version is qemu's version from the greeting.
	Version qmp.Version

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan qmpReply
	readErr error // set before done is closed
	done    chan struct{}
	closeMu sync.Once
}

type qmpReply struct {
	raw []byte
	err error
}

// errMonitorClosed: the monitor connection ended (qemu exited or the
// monitor was closed).
var errMonitorClosed = errors.New("qemu: QMP connection closed")

var _ qmp.Monitor = (*rawMonitor)(nil)

func newSocketMonitor(conn net.Conn, onEvent func(Event)) *socketMonitor {
	return &socketMonitor{
		conn:    conn,
		onEvent: onEvent,
		pending: map[string]chan qmpReply{},
		done:    make(chan struct{}),
	}
}

// connect reads the greeting, negotiates capabilities and starts the
// reader. ctx bounds the handshake.
func (m *socketMonitor) connect(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		m.conn.SetDeadline(dl)
	} else {
		m.conn.SetDeadline(time.Now().Add(DefaultQMPTimeout))
	}
	stop := context.AfterFunc(ctx, func() { m.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	dec := json.NewDecoder(m.conn)
	var greeting struct {
		QMP *struct {
			Version      qmp.Version `json:"version"`
			Capabilities []string    `json:"capabilities"`
		} `json:"QMP"`
	}
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("qemu: QMP greeting: %w", ctxErr(ctx, err))
	}
	if greeting.QMP == nil {
		return errors.New("qemu: QMP greeting: not a QMP greeting")
	}
	m.Version = greeting.QMP.Version
	if _, err := m.conn.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n")); err != nil {
		return fmt.Errorf("qemu: QMP qmp_capabilities: %w", ctxErr(ctx, err))
	}
	var r struct {
		Return json.RawMessage `json:"return"`
		Error  *qmpErrorBody   `json:"error"`
	}
	if err := dec.Decode(&r); err != nil {
		return fmt.Errorf("qemu: QMP qmp_capabilities: %w", ctxErr(ctx, err))
	}
	if r.Error != nil {
		return &QMPError{Command: "qmp_capabilities", Class: r.Error.Class, Desc: r.Error.Desc}
	}
	if !stop() {
		return fmt.Errorf("qemu: QMP handshake: %w", ctx.Err())
	}
	m.conn.SetDeadline(time.Time{})
	go m.read(dec)
	return nil
}

// ctxErr prefers the context's error to the I/O error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

type qmpErrorBody struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

// read is the monitor's only reader. It dispatches replies by id and
// events to onEvent, and never blocks on either.
func (m *socketMonitor) read(dec *json.Decoder) {
	var err error
	for {
		var msg json.RawMessage
		if err = dec.Decode(&msg); err != nil {
			break
		}
		var head struct {
			Event     string         `json:"event"`
			Data      map[string]any `json:"data"`
			ID        *string        `json:"id"`
			Timestamp struct {
				Seconds      int64 `json:"seconds"`
				Microseconds int64 `json:"microseconds"`
			} `json:"timestamp"`
		}
		if json.Unmarshal(msg, &head) != nil {
			continue
		}
		if head.Event != "" {
			if m.onEvent != nil {
				m.onEvent(Event{
					Name: head.Event,
					Data: head.Data,
					Time: time.Unix(head.Timestamp.Seconds, head.Timestamp.Microseconds*1000),
				})
			}
			continue
		}
		if head.ID == nil {
			continue // a reply to nobody (we always send an id)
		}
		m.mu.Lock()
		ch := m.pending[*head.ID]
		delete(m.pending, *head.ID)
		m.mu.Unlock()
		if ch != nil {
			ch <- qmpReply{raw: msg} // buffered: never blocks
		}
	}
	m.mu.Lock()
	m.readErr = fmt.Errorf("%w: %v", errMonitorClosed, err)
	for id, ch := range m.pending {
		ch <- qmpReply{err: m.readErr}
		delete(m.pending, id)
	}
	m.mu.Unlock()
	close(m.done)
}

// run sends cmd with a fresh id and waits for its reply, ctx, or the end
// of the connection.
func (m *socketMonitor) run(ctx context.Context, cmd []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(cmd, &obj); err != nil {
		return nil, fmt.Errorf("qemu: QMP command is not a JSON object: %w", err)
	}
	name := commandName(obj)
	ch := make(chan qmpReply, 1)
	m.mu.Lock()
	if m.readErr != nil {
		err := m.readErr
		m.mu.Unlock()
		return nil, err
	}
	m.nextID++
	id := "sh-" + strconv.FormatUint(m.nextID, 10)
	m.pending[id] = ch
	m.mu.Unlock()
	forget := func() {
		m.mu.Lock()
		delete(m.pending, id)
		m.mu.Unlock()
	}
	obj["id"], _ = json.Marshal(id)
	b, err := json.Marshal(obj)
	if err != nil {
		forget()
		return nil, err
	}
	m.wmu.Lock()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(DefaultQMPTimeout)
	}
	m.conn.SetWriteDeadline(dl)
	_, err = m.conn.Write(append(b, '\n'))
	m.wmu.Unlock()
	if err != nil {
		forget()
		return nil, fmt.Errorf("qemu: QMP %s: %w", name, ctxErr(ctx, err))
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("qemu: QMP %s: %w", name, r.err)
		}
		return checkReply(name, r.raw)
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("qemu: QMP %s: %w", name, context.Cause(ctx))
	}
}

// checkReply turns a QMP error reply into *QMPError.
func checkReply(name string, reply []byte) ([]byte, error) {
	var r struct {
		Error *qmpErrorBody `json:"error"`
	}
	if err := json.Unmarshal(reply, &r); err != nil {
		return nil, fmt.Errorf("qemu: QMP %s: bad reply: %w", name, err)
	}
	if r.Error != nil {
		return nil, &QMPError{Command: name, Class: r.Error.Class, Desc: r.Error.Desc}
	}
	return reply, nil
}

func commandName(obj map[string]json.RawMessage) string {
	var name string
	if json.Unmarshal(obj["execute"], &name) != nil || name == "" {
		json.Unmarshal(obj["exec-oob"], &name)
	}
	if name == "" {
		return "(unnamed command)"
	}
	return name
}

// close ends the connection and waits for the reader.
func (m *socketMonitor) close() error {
	var err error
	m.closeMu.Do(func() { err = m.conn.Close() })
	<-m.done
	return err
}

// rawMonitor adapts a runner and one call's context to qmp.Monitor, so
// qmp/raw's typed calls run with a deadline and stop when qemu exits.
type rawMonitor struct {
	ctx context.Context
	r   runner
}

func (m rawMonitor) Connect() error                 { return nil }
func (m rawMonitor) Disconnect() error              { return nil }
func (m rawMonitor) Run(cmd []byte) ([]byte, error) { return m.r.run(m.ctx, cmd) }

// Events is not used through raw: events reach subscribers through the
// VM's event hub.
func (m rawMonitor) Events(context.Context) (<-chan qmp.Event, error) {
	return nil, qmp.ErrEventsNotSupported
}

func newRaw(ctx context.Context, r runner) *raw.Monitor { return raw.NewMonitor(rawMonitor{ctx, r}) }
