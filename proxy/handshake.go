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

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
)

// proxyCommonCaps is what the proxy advertises to clients: ticket auth
// with mechanism selection and mini headers, never AUTH_SASL (spice-gtk
// would switch to SASL).
var proxyCommonCaps = spice.CapsOf(spice.CapAuthSelection, spice.CapAuthSpice, spice.CapMiniHeader)

// handleClient owns one accepted connection from accept to close.
func (p *Proxy) handleClient(raw net.Conn, secure bool) {
	defer p.wg.Done()
	start := time.Now()
	lst := listenerName(secure)
	p.metrics.connections.WithLabelValues(lst).Inc()
	defer p.metrics.connections.WithLabelValues(lst).Dec()

	ch, result := p.handshake(raw, secure, start, p.newTracer(start))
	p.metrics.handshakes.WithLabelValues(result).Inc()
	if ch == nil {
		p.untrackConn(raw)
		raw.Close()
		return
	}
	p.metrics.handshakeTime.WithLabelValues(ch.typ.String()).Observe(time.Since(start).Seconds())
	ch.run()
}

// handshake runs the client leg and the backend leg of one channel's
// link. It returns the channel, registered and ready to relay, or nil
// and the reason (a metric label) after answering the client.
func (p *Proxy) handshake(raw net.Conn, secure bool, start time.Time, tr *tracer) (*channel, string) {
	hto := p.HandshakeTimeout
	if hto <= 0 {
		hto = DefaultHandshakeTimeout
	}
	deadline := start.Add(hto)
	raw.SetDeadline(deadline)
	log := p.Logger.With("remote", raw.RemoteAddr().String(), "listener", listenerName(secure))

	c := raw
	if secure {
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

	m, err := spice.ReadLinkMess(c, spice.DefaultMaxLinkSize)
	if err != nil {
		if code := spice.CodeOf(err); code != spice.LinkOK {
			log.Info("link refused", "code", code.String(), "err", err)
			c.Write(spice.MarshalLinkError(code))
			return nil, code.Name()
		}
		return nil, ioResult(err)
	}
	tr.linked(m)
	log = log.With("channel", fmt.Sprintf("%s:%d", m.ChannelType, m.ChannelID))
	refuseLink := func(code spice.LinkErr, why string) (*channel, string) {
		log.Info("link refused", "code", code.String(), "reason", why)
		c.Write(spice.MarshalLinkError(code))
		return nil, code.Name()
	}
	if !secure && !p.AllowPlain {
		return refuseLink(spice.ErrNeedSecured, "plain listener; clients must use TLS")
	}
	if !m.ChannelType.Known() || m.ChannelType == spice.ChannelTunnel {
		return refuseLink(spice.ErrChannelNotAvailable, "unknown channel type")
	}

	key, err := p.keys.Get()
	if err != nil {
		log.Error("link key", "err", err)
		return nil, "internal_error"
	}
	reply := &spice.LinkReply{PubKey: key.Public, CommonCaps: proxyCommonCaps, ChannelCaps: p.caps.get(p, m.ChannelType, deadline)}
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

	bconn, breply, err := p.linkBackend(p.stop, lease.Target, m, time.Now().Add(p.backendTimeout()), tr)
	if err != nil {
		code := backendCode(err)
		p.metrics.backendDials.WithLabelValues(code.Name()).Inc()
		lease.Failed(err.Error())
		p.Logger.Warn("backend link failed", "session", lease.SessionID, "console", lease.Target.Key.String(),
			"channel", fmt.Sprintf("%s:%d", m.ChannelType, m.ChannelID), "err", err)
		return result(code, "backend link failed", "err", err)
	}
	p.metrics.backendDials.WithLabelValues("ok").Inc()

	ch := &channel{
		p: p, log: log, lease: lease, typ: m.ChannelType, id: m.ChannelID,
		client: c, backend: bconn, rawClient: raw, tr: tr,
		clientMini:   spice.UseMiniHeader(proxyCommonCaps, m.CommonCaps),
		backendMini:  spice.UseMiniHeader(m.CommonCaps, breply.CommonCaps),
		done:         make(chan struct{}),
		backendSpoke: make(chan struct{}),
		toClientDone: make(chan struct{}),
	}
	if ch.clientMini != ch.backendMini {
		log.Info("re-framing: the legs disagree on MINI_HEADER", "client_mini", ch.clientMini, "backend_mini", ch.backendMini)
	}
	if _, err := c.Write(binary.LittleEndian.AppendUint32(nil, uint32(spice.LinkOK))); err != nil {
		lease.Failed("client left before its link result")
		ch.close("client left before its link result")
		return nil, ioResult(err)
	}
	tr.step(TraceClientResult)
	if !p.register(ch) {
		ch.close("proxy shutting down")
		return nil, "shutdown"
	}
	raw.SetDeadline(time.Time{})
	bconn.SetDeadline(time.Time{})
	return ch, "ok"
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
	delete(p.conns, ch.rawClient)
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
	if code := spice.CodeOf(err); code != spice.LinkOK {
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
