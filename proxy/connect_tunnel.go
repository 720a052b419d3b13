package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/proxy/tunnel"
	"github.com/spiceharness/spiceharness/static"
)

// Audit events of the CONNECT listener. They name the console and the
// host's fingerprint, never the host itself.
const (
	EventTunnelOpened  store.EventKind = "tunnel_opened"
	EventTunnelClosed  store.EventKind = "tunnel_closed"
	EventTunnelRefused store.EventKind = "tunnel_refused"
)

// handleConnect owns one accepted CONNECT connection until it is
// refused or its tunnel ends.
func (p *Proxy) handleConnect(c net.Conn) {
	defer p.wg.Done()
	pending := true
	release := func() {
		if pending {
			pending = false
			<-p.tun.pending
		}
	}
	defer release()
	log := p.Logger.With("remote", c.RemoteAddr().String(), "listener", "connect")
	t, result, answer := p.connectHandshake(c, log)
	// Counted before the answer goes out, so that a client that read it
	// also sees it counted.
	p.metrics.connectRequests.WithLabelValues(result).Inc()
	if answer != nil {
		answerAndClose(c, answer)
	}
	if t == nil {
		p.mu.Lock()
		delete(p.tun.conns, c)
		p.mu.Unlock()
		c.Close()
		return
	}
	release()
	t.run()
}

// connectHandshake reads and checks one CONNECT request. On success it
// answers 200 and returns the registered tunnel; otherwise the result
// and the HTTP answer to send (nil: none, the client is gone).
func (p *Proxy) connectHandshake(c net.Conn, log *slog.Logger) (*tunnelConn, string, []byte) {
	hto := p.Tunnel.HeadTimeout
	if hto <= 0 {
		hto = DefaultConnectHeadTimeout
	}
	maxHead := p.Tunnel.MaxHead
	if maxHead <= 0 {
		maxHead = DefaultConnectMaxHead
	}
	c.SetDeadline(time.Now().Add(hto))
	fail := func(r *refusal) (*tunnelConn, string, []byte) {
		if status, ok := statusFor[r.result]; ok {
			log.Info("CONNECT refused", "status", status, "result", r.result, "reason", r.msg)
			return nil, r.result, httpError(status, r.msg)
		}
		log.Debug("CONNECT abandoned", "result", r.result, "reason", r.msg)
		return nil, r.result, nil
	}
	head, early, ref := readHead(c, maxHead)
	if ref != nil {
		return fail(ref)
	}
	req, ref := parseConnect(head)
	if ref != nil {
		return fail(ref)
	}
	fp := tunnel.Fingerprint(req.host)
	log = log.With("host", fp, "port", req.port)
	target, ref := p.authorizeTunnel(req)
	if ref != nil {
		e := store.Event{Kind: EventTunnelRefused, Detail: fmt.Sprintf("%d %s: %s; host %s, port %d, from %s",
			statusFor[ref.result], ref.result, ref.msg, fp, req.port, c.RemoteAddr())}
		if target.Key != (static.Key{}) {
			e.Source, e.UUID = target.Key.Source, target.Key.UUID
			log = log.With("console", target.Key.String())
		}
		p.Store.Record(e)
		return fail(ref)
	}
	con := target.Console
	log = log.With("console", target.Key.String())
	addr := net.JoinHostPort(con.HypervisorIP, strconv.Itoa(req.port))
	ctx, cancel := context.WithTimeout(p.stop, p.backendTimeout())
	defer cancel()
	var d net.Dialer
	bc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		result, msg := resultBackendError, "cannot reach the console's SPICE port"
		switch {
		case p.stop.Err() != nil:
			result, msg = resultShutdown, "proxy shutting down"
		case isTimeout(err) || ctx.Err() != nil:
			result, msg = resultBackendTimeout, "the console's SPICE port did not answer in time"
		}
		p.metrics.backendDials.WithLabelValues("tunnel_" + result).Inc()
		p.Store.Record(store.Event{Kind: store.EventBackendFailed, Source: target.Key.Source, UUID: target.Key.UUID,
			Detail: fmt.Sprintf("tunnel to port %d: %v", req.port, err)})
		log.Warn("tunnel backend dial failed", "err", err)
		return fail(&refusal{result: result, msg: msg})
	}
	p.metrics.backendDials.WithLabelValues("tunnel_ok").Inc()
	t := &tunnelConn{p: p, log: log, key: target.Key, port: req.port, secure: req.port == con.SecurePort,
		host: fp, client: c, backend: bc, start: time.Now()}
	if _, err := c.Write(connectEstablished); err != nil {
		bc.Close()
		return nil, ioResult(err), nil
	}
	if len(early) > 0 {
		bc.SetWriteDeadline(time.Now().Add(p.backendTimeout()))
		if _, err := bc.Write(early); err != nil {
			bc.Close()
			return nil, resultBackendError, nil
		}
		t.sent[ToServer].Add(int64(len(early)))
		p.metrics.tunnelBytes.WithLabelValues(ToServer.String()).Add(float64(len(early)))
	}
	c.SetDeadline(time.Time{})
	bc.SetDeadline(time.Time{})
	if !p.registerTunnel(t) {
		bc.Close()
		return nil, resultShutdown, nil
	}
	return t, resultOK, nil
}

// authorizeTunnel checks a CONNECT target: a host this proxy signed, not
// expired, for a console the store knows now, and a port that is one of
// that console's SPICE ports now and was one when the host was signed.
// The returned target's Key is set once the console is known.
func (p *Proxy) authorizeTunnel(req connectRequest) (store.Target, *refusal) {
	label := req.host
	if d := p.Tunnel.Domain; d != "" {
		l, rest, ok := strings.Cut(req.host, ".")
		if !ok || !strings.EqualFold(rest, d) {
			return store.Target{}, refuse(resultUnknownHost, "host is not a tunnel host of this proxy (not under %s)", d)
		}
		label = l
	}
	claim, err := tunnel.Decode(label)
	if err != nil {
		return store.Target{}, refuse(resultUnknownHost, "host is not a tunnel host of this proxy")
	}
	var found *store.Target
	for _, t := range p.Store.Targets(0) {
		if p.tunnelHint(t.Key) == claim.Hint() && p.tun.signer.Verify(claim, t.Key) == nil {
			found = &t
			break
		}
	}
	if found == nil {
		return store.Target{}, refuse(resultUnknownHost, "host was not signed by this proxy, was altered, or its console is gone")
	}
	if now := p.tunnelNow(); !now.Before(claim.Expires) {
		return *found, refuse(resultExpired, "host expired %s ago; fetch a fresh .vv", now.Sub(claim.Expires).Truncate(time.Second))
	}
	p.mu.Lock()
	r, revoked := p.tun.revoked[found.Key]
	p.mu.Unlock()
	if revoked && !claim.Expires.After(r) {
		return *found, refuse(resultRevoked, "host was revoked when its console was terminated; fetch a fresh .vv")
	}
	con := found.Console
	if !claim.Allows(req.port) || (req.port != con.InsecurePort && req.port != con.SecurePort) {
		return *found, refuse(resultBadPort, "port %d is not a SPICE port of the console this host opens", req.port)
	}
	if con.HypervisorIP == "" {
		return *found, refuse(resultBackendError, "the console has no hypervisor address")
	}
	return *found, nil
}

// tunnelHint is the signer's hint of k, computed once per console.
func (p *Proxy) tunnelHint(k static.Key) [8]byte {
	if h, ok := p.tun.hints.Load(k); ok {
		return h.([8]byte)
	}
	h := p.tun.signer.Hint(k)
	p.tun.hints.Store(k, h)
	return h
}

// registerTunnel moves a connection from the head set to the tunnel
// set; false when the proxy is closing.
func (p *Proxy) registerTunnel(t *tunnelConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.tun.conns, t.client)
	if p.closing {
		return false
	}
	p.tun.tunnels[t] = struct{}{}
	return true
}

// tunnelChunk is how many bytes one copy moves before the byte counters
// are updated: copies between two TCP sockets use splice(2), so no
// buffer is held in user space, idle or not.
const tunnelChunk = 64 << 10

// tunnelConn is one allowed CONNECT: bytes relayed both ways, unread.
type tunnelConn struct {
	p      *Proxy
	log    *slog.Logger
	key    static.Key
	port   int
	secure bool   // the console's TLS port: the proxy sees ciphertext
	host   string // fingerprint of the signed host
	start  time.Time

	client, backend net.Conn
	closeOnce       sync.Once
	reason          atomic.Pointer[string]
	sent            [2]atomic.Int64
}

// run relays until both directions ended, then cleans up.
func (t *tunnelConn) run() {
	p := t.p
	p.metrics.tunnelsActive.Inc()
	kind := "plain"
	if t.secure {
		kind = "tls"
	}
	t.log.Info("tunnel opened", "port_kind", kind)
	p.Store.Record(store.Event{Kind: EventTunnelOpened, Source: t.key.Source, UUID: t.key.UUID,
		Detail: fmt.Sprintf("port %d (%s), host %s, from %s", t.port, kind, t.host, t.client.RemoteAddr())})

	done := make(chan struct{})
	p.wg.Add(1)
	go func() { defer p.wg.Done(); defer close(done); t.pump(ToClient, t.backend, t.client) }()
	t.pump(ToServer, t.client, t.backend)
	<-done
	t.close("both sides closed")

	p.mu.Lock()
	delete(p.tun.tunnels, t)
	p.mu.Unlock()
	p.metrics.tunnelsActive.Dec()
	reason := *t.reason.Load()
	up, down := t.sent[ToServer].Load(), t.sent[ToClient].Load()
	t.log.Info("tunnel closed", "reason", reason, "bytes_to_server", up, "bytes_to_client", down, "duration", time.Since(t.start).Round(time.Millisecond))
	p.Store.Record(store.Event{Kind: EventTunnelClosed, Source: t.key.Source, UUID: t.key.UUID,
		Detail: fmt.Sprintf("port %d, host %s: %s; %d bytes to server, %d to client, %s", t.port, t.host, reason, up, down,
			time.Since(t.start).Round(time.Millisecond))})
}

// pump copies src to dst until src ends. On EOF it passes the half-close
// on and gives the other direction HalfCloseTimeout to finish; on an
// error it closes the tunnel.
func (t *tunnelConn) pump(dir Direction, src, dst net.Conn) {
	ctr := t.p.metrics.tunnelBytes.WithLabelValues(dir.String())
	for {
		n, err := io.Copy(dst, &io.LimitedReader{R: src, N: tunnelChunk})
		if n > 0 {
			ctr.Add(float64(n))
			t.sent[dir].Add(n)
		}
		if err != nil {
			t.close(fmt.Sprintf("%s: %v", dir, err))
			return
		}
		if n < tunnelChunk { // EOF
			break
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	hc := t.p.HalfCloseTimeout
	if hc <= 0 {
		hc = DefaultHalfCloseTimeout
	}
	reason := "client closed"
	if dir == ToClient {
		reason = "qemu closed"
	}
	t.reason.CompareAndSwap(nil, &reason)
	deadline := time.Now().Add(hc)
	t.client.SetDeadline(deadline)
	t.backend.SetDeadline(deadline)
}

// close cuts both connections once; the first reason wins.
func (t *tunnelConn) close(reason string) {
	t.reason.CompareAndSwap(nil, &reason)
	t.closeOnce.Do(func() {
		t.client.Close()
		t.backend.Close()
	})
}
