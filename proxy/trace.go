package proxy

import (
	"time"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// TraceStep is a point in one client connection's handshake and relay,
// in the order they happen for a channel that links.
type TraceStep uint8

const (
	TraceAccepted      TraceStep = iota // the listener accepted the connection
	TraceTLSDone                        // the client's TLS handshake finished (TLS listener)
	TraceLinkRead                       // the client's link message was read
	TraceReplySent                      // the proxy's link reply was written
	TraceTicketRead                     // the client's ticket (and mechanism word) was read
	TraceAuthorized                     // the token decrypted and the store accepted it
	TraceBackendDialed                  // the TCP connection to qemu is up
	TraceBackendTLS                     // the TLS handshake with qemu finished (TLS backends)
	TraceBackendReply                   // qemu's link reply arrived
	TraceBackendResult                  // qemu's link result arrived
	TraceClientResult                   // the link result was written to the client
	TraceFirstToServer                  // the first message was relayed to qemu
	TraceFirstToClient                  // the first message was relayed to the client
	nTraceSteps
)

var traceNames = [nTraceSteps]string{
	"accepted", "tls_done", "link_read", "reply_sent", "ticket_read", "authorized",
	"backend_dialed", "backend_tls", "backend_reply", "backend_result", "client_result",
	"first_to_server", "first_to_client",
}

func (s TraceStep) String() string {
	if s < nTraceSteps {
		return traceNames[s]
	}
	return "?"
}

// TraceEvent is one step of one client connection.
type TraceEvent struct {
	// Conn numbers the proxy's accepted connections (from 1, while a
	// trace function is set).
	Conn uint64
	Step TraceStep
	// Channel and ID are the channel's, once its link message was read
	// (zero before).
	Channel spice.ChannelType
	ID      uint8
	At      time.Time
}

// SetTrace makes the proxy call f at every TraceStep of every connection
// accepted from now on (nil: off, the default). f runs on the
// connection's own goroutines, so it must be quick and safe for
// concurrent use. With no trace set, tracing costs one atomic load per
// connection. For benchmarks and debugging: it carries no secrets.
func (p *Proxy) SetTrace(f func(TraceEvent)) {
	if f == nil {
		p.trace.Store(nil)
		return
	}
	p.trace.Store(&f)
}

// tracer reports one connection's steps; a nil *tracer reports nothing.
type tracer struct {
	f    func(TraceEvent)
	conn uint64
	typ  spice.ChannelType
	id   uint8
}

// newTracer returns the tracer of a connection accepted at start, or nil
// when no trace is set.
func (p *Proxy) newTracer(start time.Time) *tracer {
	f := p.trace.Load()
	if f == nil {
		return nil
	}
	t := &tracer{f: *f, conn: p.traceConns.Add(1)}
	t.at(TraceAccepted, start)
	return t
}

func (t *tracer) step(s TraceStep) {
	if t != nil {
		t.at(s, time.Now())
	}
}

func (t *tracer) at(s TraceStep, when time.Time) {
	t.f(TraceEvent{Conn: t.conn, Step: s, Channel: t.typ, ID: t.id, At: when})
}

// linked records the channel the client asked for (before any other
// goroutine sees t).
func (t *tracer) linked(m *spice.LinkMess) {
	if t != nil {
		t.typ, t.id = m.ChannelType, m.ChannelID
		t.step(TraceLinkRead)
	}
}

// relayed traces the first message relayed in direction d (pump, which
// runs once per direction, calls it for its first message only).
func (t *tracer) relayed(d Direction) {
	if t != nil {
		s := TraceFirstToServer
		if d == ToClient {
			s = TraceFirstToClient
		}
		t.step(s)
	}
}
