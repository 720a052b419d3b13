package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
)

// dialBackend connects to a console: TLS (with the source's CA and the
// console's host_subject) when it has a secure port, else plain. It gives
// up at deadline or when ctx ends. It reports its steps to tr (nil:
// none).
func dialBackend(ctx context.Context, t store.Target, secure bool, deadline time.Time, tr *tracer) (net.Conn, error) {
	c := t.Console
	port := c.InsecurePort
	if secure {
		port = c.SecurePort
	}
	addr := net.JoinHostPort(c.HypervisorIP, strconv.Itoa(port))
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &spice.LinkError{Step: spice.StepDial, Err: err}
	}
	tr.step(TraceBackendDialed)
	if !secure {
		return conn, nil
	}
	name := c.Hypervisor
	if name == "" {
		name = c.HypervisorIP
	}
	tc := tls.Client(conn, spice.TLSConfig(caPool(t.CACert), name, c.HostSubject))
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, &spice.LinkError{Step: spice.StepTLS, Err: err}
	}
	tr.step(TraceBackendTLS)
	return tc, nil
}

// linkBackend dials the console and links the client's channel there:
// the client's connection id, channel type and id and caps verbatim, and
// the console's ticket encrypted with qemu's key. A console with a secure
// port is always linked over TLS (qemu accepts every channel there), so
// NEED_SECURED can only come from a console that has no secure port; it
// is the client's answer then, as there is nowhere to retry. When stop
// ends (the proxy shuts down) the link is cut, unless its ticket is
// already on its way.
func (p *Proxy) linkBackend(stop context.Context, t store.Target, m *spice.LinkMess, deadline time.Time, tr *tracer) (net.Conn, *spice.LinkReply, error) {
	conn, err := dialBackend(stop, t, t.Console.SecurePort != 0, deadline, tr)
	if err != nil {
		return nil, nil, withChannel(err, m)
	}
	lc := &linkConn{Conn: conn, tr: tr}
	cut := context.AfterFunc(stop, lc.interrupt)
	reply, err := spice.Link(lc, m, t.Console.Ticket, spice.LinkOptions{Deadline: deadline})
	cut()
	if err != nil {
		// Link fails before qemu linked the channel (or, after the
		// ticket went up, only at the deadline: qemu answers in ms).
		conn.Close()
		return nil, nil, err
	}
	return conn, reply, nil
}

// errLinkInterrupted: the proxy shut down during a backend link.
var errLinkInterrupted = errors.New("proxy: shutting down")

// linkConn lets Shutdown cut a backend link that is still waiting for
// qemu's link reply. spice.Link writes the link message, then the
// mechanism word and ticket in one second write. Before that second
// write the link can be cut safely (qemu has linked nothing); after it,
// qemu may link the channel within milliseconds, and a display channel
// closed then, before its DISPLAY_INIT, crashes spice-server 0.15: the
// link is left to finish and the caller closes it with the display guard.
type linkConn struct {
	net.Conn
	mu     sync.Mutex
	writes int
	cut    bool
	// tr traces the first read after the link message (qemu's reply)
	// and after the ticket (its result); traced[i] once done.
	tr     *tracer
	traced [2]bool
}

func (c *linkConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.tr != nil && n > 0 {
		c.mu.Lock()
		w := c.writes
		c.mu.Unlock()
		if w >= 1 && w <= 2 && !c.traced[w-1] {
			c.traced[w-1] = true
			c.tr.step([2]TraceStep{TraceBackendReply, TraceBackendResult}[w-1])
		}
	}
	return n, err
}

var past = time.Unix(1, 0)

func (c *linkConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.cut {
		c.mu.Unlock()
		return 0, errLinkInterrupted
	}
	c.writes++
	c.mu.Unlock()
	return c.Conn.Write(b)
}

// SetDeadline and friends keep a cut link's deadline in the past.
func (c *linkConn) SetDeadline(t time.Time) error      { return c.deadline(c.Conn.SetDeadline, t) }
func (c *linkConn) SetReadDeadline(t time.Time) error  { return c.deadline(c.Conn.SetReadDeadline, t) }
func (c *linkConn) SetWriteDeadline(t time.Time) error { return c.deadline(c.Conn.SetWriteDeadline, t) }

func (c *linkConn) deadline(set func(time.Time) error, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut {
		t = past
	}
	return set(t)
}

// interrupt cuts the link unless the ticket has been written.
func (c *linkConn) interrupt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writes >= 2 {
		return
	}
	c.cut = true
	c.Conn.SetDeadline(past)
}

func withChannel(err error, m *spice.LinkMess) error {
	var le *spice.LinkError
	if errors.As(err, &le) {
		le.Channel, le.ID = m.ChannelType, m.ChannelID
	}
	return err
}
