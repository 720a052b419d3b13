package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strconv"
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
)

// dialBackend connects to a console: TLS (with the source's CA and the
// console's host_subject) when it has a secure port, else plain.
func dialBackend(t store.Target, secure bool, deadline time.Time) (net.Conn, error) {
	c := t.Console
	port := c.InsecurePort
	if secure {
		port = c.SecurePort
	}
	addr := net.JoinHostPort(c.HypervisorIP, strconv.Itoa(port))
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &spice.LinkError{Step: spice.StepDial, Err: err}
	}
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
	return tc, nil
}

// linkBackend dials the console and links the client's channel there:
// the client's connection id, channel type and id and caps verbatim, and
// the console's ticket encrypted with qemu's key. A plain port answering
// NEED_SECURED is retried on the secure port, as spice-gtk would.
func (p *Proxy) linkBackend(t store.Target, m *spice.LinkMess, deadline time.Time) (net.Conn, *spice.LinkReply, error) {
	secure := t.Console.SecurePort != 0
	conn, reply, err := linkOnce(t, m, secure, deadline)
	if err != nil && !secure && spice.CodeOf(err) == spice.ErrNeedSecured && t.Console.SecurePort != 0 {
		conn, reply, err = linkOnce(t, m, true, deadline)
	}
	return conn, reply, err
}

func linkOnce(t store.Target, m *spice.LinkMess, secure bool, deadline time.Time) (net.Conn, *spice.LinkReply, error) {
	conn, err := dialBackend(t, secure, deadline)
	if err != nil {
		return nil, nil, withChannel(err, m)
	}
	reply, err := spice.Link(conn, m, t.Console.Ticket, spice.LinkOptions{Deadline: deadline})
	if err != nil {
		// A display link that succeeded upstream is never closed
		// before DISPLAY_INIT; Link only fails before that point.
		conn.Close()
		return nil, nil, err
	}
	return conn, reply, nil
}

func withChannel(err error, m *spice.LinkMess) error {
	var le *spice.LinkError
	if errors.As(err, &le) {
		le.Channel, le.ID = m.ChannelType, m.ChannelID
	}
	return err
}
