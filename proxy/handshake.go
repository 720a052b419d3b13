package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/spiceharness/spiceharness/internal/mutant"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
)

// proxyCommonCaps is what the proxy advertises to clients: ticket auth
// with mechanism selection and mini headers, never AUTH_SASL (spice-gtk
// would switch to SASL).
var proxyCommonCaps = spice.CapsOf(spice.CapAuthSelection, spice.CapAuthSpice, spice.CapMiniHeader)

// handleClient owns one accepted connection from accept to close.
func (p *Proxy) handleClient(raw net.Conn, kind listenerKind) {
	defer p.wg.Done()
	start := time.Now()
	lst := kind.String()
	p.metrics.connections.WithLabelValues(lst).Inc()
	defer p.metrics.connections.WithLabelValues(lst).Dec()

	ch, result := p.handshake(raw, kind, start, p.newTracer(start))
	p.metrics.handshakes.WithLabelValues(result).Inc()
	if ch == nil {
		p.untrackConn(raw)
		if w, ok := raw.(*wsConn); ok {
			w.refuse(result)
		}
		raw.Close()
		return
	}
	p.metrics.handshakeTime.WithLabelValues(ch.typ.String()).Observe(time.Since(start).Seconds())
	if w, ok := raw.(*wsConn); ok {
		w.attach(ch.lease.SessionID)
	}
	ch.run()
}

// handshake runs the client leg and the backend leg of one channel's
// link. It returns the channel, registered and ready to relay, or nil
// and the reason (a metric label) after answering the client.
func (p *Proxy) handshake(raw net.Conn, kind listenerKind, start time.Time, tr *tracer) (*channel, string) {
	hto := p.HandshakeTimeout
	if hto <= 0 {
		hto = DefaultHandshakeTimeout
	}
	deadline := start.Add(hto)
	if mutant.On(p, mutant.NoHandshakeDeadline) {
		deadline = start.Add(time.Hour)
	}
	raw.SetDeadline(deadline)
	log := p.Logger.With("remote", raw.RemoteAddr().String(), "listener", kind.String())

	c := raw
	if kind == listenerTLS {
		tc := tls.Server(raw, p.tlsConf)
		if err := tc.Handshake(); err != nil {
			log.Debug("tls handshake failed", "err", err)
			if isTimeout(err) {
				return nil, "timeout"
			}
			return nil, "tls_error"
		}
		c = tc
		tr.step(TraceTLSDone)
	}

	// refuse answers a whole error link reply, as spice-server does.
	refuse := func(code spice.LinkErr, args ...any) (*channel, string) {
		log.Info("link refused", append([]any{"code", code.String()}, args...)...)
		c.Write(spice.MarshalLinkError(code))
		lingerClose(raw, deadline)
		return nil, code.Name()
	}
	// Each header field is judged as soon as its bytes are in: four bytes
	// of bad magic are answered at once, not at the deadline.
	m, err := spice.ReadLinkMess(c, spice.DefaultMaxLinkSize)
	if err != nil {
		if code, ok := spice.CodeOf(err); ok {
			return refuse(code, "err", err)
		}
		return nil, ioResult(err)
	}
	tr.linked(m)
	log = log.With("channel", fmt.Sprintf("%s:%d", m.ChannelType, m.ChannelID))
	refuseLink := func(code spice.LinkErr, why string) (*channel, string) {
		return refuse(code, "reason", why)
	}
	// A WebSocket client cannot follow NEED_SECURED (TLS is the
	// WebSocket's own, wss://), so that listener serves sessions.
	if kind == listenerPlain && !p.AllowPlain {
		return refuseLink(spice.ErrNeedSecured, "plain listener; clients must use TLS")
	}
	if !m.ChannelType.Known() || m.ChannelType == spice.ChannelTunnel {
		return refuseLink(spice.ErrChannelNotAvailable, "unknown channel type")
	}
	if m.ChannelType == spice.ChannelUsbredir && mutant.On(p, mutant.AllowlistMissingUsbredir) {
		return refuseLink(spice.ErrChannelNotAvailable, "channel type not in the allowlist")
	}

	key, err := p.keys.Get()
	if err != nil {
		log.Error("link key", "err", err)
		return nil, "internal_error"
	}
	common := proxyCommonCaps
	if kind == listenerWebSocket && m.ChannelType == spice.ChannelInputs && mutant.On(p, mutant.WSInputsFullHeaders) {
		// Valid SPICE (the channel then runs with full headers, re-framed
		// for qemu), but spice-html5 never reads the reply's caps: it
		// always speaks mini headers (its spiceconn.js FIXME), so MINI_HEADER
		// on every channel is what keeps a browser's keys alive.
		common = spice.CapsOf(spice.CapAuthSelection, spice.CapAuthSpice)
	}
	reply := &spice.LinkReply{PubKey: key.Public, CommonCaps: common, ChannelCaps: p.replyCaps(m.ChannelType, deadline)}
	if _, err := c.Write(reply.Marshal()); err != nil {
		return nil, ioResult(err)
	}
	tr.step(TraceReplySent)
	// The mechanism word comes only if both sides advertised
	// AUTH_SELECTION (spice-server decides from the client's caps; we
	// always advertise it).
	if m.CommonCaps.Has(spice.CapAuthSelection) {
		var mech [4]byte
		if _, err := io.ReadFull(c, mech[:]); err != nil {
			return nil, ioResult(err)
		}
		if v := binary.LittleEndian.Uint32(mech[:]); v != spice.AuthSpice {
			// spice-server answers an unknown mechanism with a whole error
			// reply; SASL is never offered here, so it is unknown too.
			return refuseLink(spice.ErrInvalidData, fmt.Sprintf("auth mechanism %d", v))
		}
	}
	ticket := make([]byte, spice.TicketSize)
	if _, err := io.ReadFull(c, ticket); err != nil {
		return nil, ioResult(err)
	}
	tr.step(TraceTicketRead)
	result := func(code spice.LinkErr, why string, args ...any) (*channel, string) {
		log.Info("link refused", append([]any{"code", code.String(), "reason", why}, args...)...)
		c.Write(binary.LittleEndian.AppendUint32(nil, uint32(code)))
		return nil, code.Name()
	}
	token, err := spice.DecryptTicket(key.Private, ticket)
	if err != nil {
		return result(spice.ErrPermissionDenied, "ticket does not decrypt")
	}
	main := m.ChannelType == spice.ChannelMain
	if main && m.ConnectionID != 0 {
		// qemu would treat it as a migration target and adopt the id.
		return result(spice.ErrBadConnectionID, "main channel with a non-zero connection id")
	}
	lease, err := p.Store.Authorize(token, main, m.ConnectionID)
	if err != nil {
		return result(authCode(err), err.Error())
	}
	log = log.With("session", lease.SessionID, "console", lease.Target.Key.String())
	tr.step(TraceAuthorized)

	earlyOK := mutant.On(p, mutant.EarlyLinkOK)
	if earlyOK {
		c.Write(binary.LittleEndian.AppendUint32(nil, uint32(spice.LinkOK)))
	}
	bconn, breply, err := p.linkBackend(p.stop, lease.Target, m, time.Now().Add(p.backendTimeout()), tr)
	if err != nil {
		code := backendCode(err)
		p.metrics.backendDials.WithLabelValues(code.Name()).Inc()
		lease.Failed(err.Error())
		p.Logger.Warn("backend link failed", "session", lease.SessionID, "console", lease.Target.Key.String(),
			"channel", fmt.Sprintf("%s:%d", m.ChannelType, m.ChannelID), "err", err)
		if earlyOK {
			return nil, code.Name() // the client was told OK: it just sees the close
		}
		return result(code, "backend link failed", "err", err)
	}
	p.metrics.backendDials.WithLabelValues("ok").Inc()

	ch := &channel{
		p: p, log: log, lease: lease, typ: m.ChannelType, id: m.ChannelID,
		client: c, backend: bconn, rawClient: raw, tr: tr,
		clientMini:   spice.UseMiniHeader(common, m.CommonCaps),
		backendMini:  spice.UseMiniHeader(m.CommonCaps, breply.CommonCaps),
		done:         make(chan struct{}),
		backendSpoke: make(chan struct{}),
		toClientDone: make(chan struct{}),
	}
	if ch.clientMini != ch.backendMini {
		log.Info("re-framing: the legs disagree on MINI_HEADER", "client_mini", ch.clientMini, "backend_mini", ch.backendMini)
	}
	ch.entry = &store.Channel{Type: ch.label(), ID: ch.id, Started: time.Now(), Close: func() { ch.close("terminated") }}
	// Attached before the client hears OK: a terminate that has answered
	// counted and closed every channel a client was told is linked, and a
	// session that ended during the backend link refuses the channel.
	if !lease.Attach(ch.entry) {
		const why = "session ended during the link"
		code := "session_ended"
		if !earlyOK {
			_, code = result(spice.ErrBadConnectionID, why)
		}
		ch.close(why) // after the reply: it closes the client too
		return nil, code
	}
	if earlyOK {
		// Written above, before qemu was asked.
	} else if _, err := c.Write(binary.LittleEndian.AppendUint32(nil, uint32(spice.LinkOK))); err != nil {
		const why = "client left before its link result"
		lease.Failed(why)
		ch.close(why)
		lease.Detach(ch.entry, why)
		return nil, ioResult(err)
	}
	tr.step(TraceClientResult)
	if !p.register(ch) {
		ch.close("proxy shutting down")
		lease.Detach(ch.entry, "proxy shutting down")
		return nil, "shutdown"
	}
	raw.SetDeadline(time.Time{})
	bconn.SetDeadline(time.Time{})
	return ch, "ok"
}

// lingerTimeout bounds lingerClose.
const lingerTimeout = 500 * time.Millisecond

// lingerClose follows an error link reply on raw: it sends FIN at once,
// then reads and discards what the client still sends, until EOF or
// lingerTimeout (or the handshake deadline, whichever comes first). A
// close with unread bytes (the rest of a header refused after its magic)
// would reset the connection, and a reset may destroy the reply before
// the client reads it (Windows' TCP does). The caller closes raw.
func lingerClose(raw net.Conn, deadline time.Time) {
	if _, ok := raw.(*wsConn); ok {
		return // the WebSocket's close handshake does this (wsConn.refuse)
	}
	if cw, ok := raw.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	if end := time.Now().Add(lingerTimeout); end.Before(deadline) {
		deadline = end
	}
	raw.SetReadDeadline(deadline)
	io.Copy(io.Discard, io.LimitReader(raw, 64<<10))
}

func (p *Proxy) backendTimeout() time.Duration {
	if p.BackendTimeout > 0 {
		return p.BackendTimeout
	}
	return DefaultBackendTimeout
}

// register moves a linked channel from the handshake set to the relay
// set; false when the proxy is closing.
func (p *Proxy) register(ch *channel) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.untrackConnLocked(ch.rawClient)
	if p.closing {
		return false
	}
	p.channels[ch] = struct{}{}
	return true
}

// authCode maps a store refusal to the link result qemu would give.
func authCode(err error) spice.LinkErr {
	switch {
	case errors.Is(err, store.ErrWrongSession), errors.Is(err, store.ErrNoSession), errors.Is(err, store.ErrSessionEnded):
		return spice.ErrBadConnectionID
	default:
		return spice.ErrPermissionDenied
	}
}

// backendCode maps a backend failure to the client's link result: qemu's
// own refusal passes through; a channel qemu does not have (closed with
// no reply) is CHANNEL_NOT_AVAILABLE; an unreachable backend is ERROR.
func backendCode(err error) spice.LinkErr {
	if code, ok := spice.CodeOf(err); ok {
		return code
	}
	var le *spice.LinkError
	if errors.As(err, &le) && le.Step == spice.StepLinkReply && errors.Is(err, io.EOF) {
		return spice.ErrChannelNotAvailable
	}
	return spice.ErrLinkGeneric
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func ioResult(err error) string {
	if isTimeout(err) {
		return "timeout"
	}
	return "closed"
}
