package proxy

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// acceptLoop accepts until ln is closed. Every connection is handled on
// its own goroutine under the handshake deadline, so a silent client or
// a failed TLS handshake never delays another accept. A connection over
// a handshake limit (MaxHandshakes, MaxHandshakesPerSource) is closed
// here, before any byte is read.
func (p *Proxy) acceptLoop(ln net.Listener, kind listenerKind) error {
	var backoff time.Duration
	lst := kind.String()
	for {
		c, ok := p.accept(ln, &backoff)
		if !ok {
			return nil
		}
		if c == nil {
			continue
		}
		src := sourceOf(c)
		p.mu.Lock()
		if p.closing {
			p.mu.Unlock()
			c.Close()
			return nil
		}
		reason, limit := p.admitLocked(src)
		if reason != "" {
			p.mu.Unlock()
			c.Close()
			p.refused(lst, src, reason, limit)
			continue
		}
		p.conns[c] = src
		if src.IsValid() {
			p.perSource[src]++
		}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.handleClient(c, kind)
	}
}

// Reasons a connection is refused at accept (metric labels).
const (
	refusedHandshakes       = "handshake_limit"
	refusedSourceHandshakes = "source_handshake_limit"
)

// admitLocked says why a new connection from src may not start its
// handshake ("" when it may), and the limit it hit.
func (p *Proxy) admitLocked(src netip.Addr) (reason string, limit int) {
	if n := p.maxHandshakes(); n > 0 && len(p.conns) >= n {
		return refusedHandshakes, n
	}
	if n := p.maxHandshakesPerSource(); n > 0 && src.IsValid() && p.perSource[src] >= n {
		return refusedSourceHandshakes, n
	}
	return "", 0
}

func (p *Proxy) maxHandshakes() int {
	if p.MaxHandshakes == 0 {
		return DefaultMaxHandshakes
	}
	return p.MaxHandshakes
}

func (p *Proxy) maxHandshakesPerSource() int {
	if p.MaxHandshakesPerSource == 0 {
		return DefaultMaxHandshakesPerSource
	}
	return p.MaxHandshakesPerSource
}

// refused counts a connection closed at accept and logs it, at most once
// per refusalLogInterval and reason, with how many went unlogged.
func (p *Proxy) refused(listener string, src netip.Addr, reason string, limit int) {
	p.metrics.refused.WithLabelValues(listener, reason).Inc()
	if n, ok := p.refusalLog.allow(reason, time.Now()); ok {
		p.Logger.Warn("connection refused: too many connections in their handshake",
			"listener", listener, "source", src.String(), "reason", reason, "limit", limit, "refused_since_last_log", n)
	}
}

// refusalLogInterval bounds how often refusals of one reason are logged.
const refusalLogInterval = 5 * time.Second

// rateLog lets one log line per key through per refusalLogInterval and
// counts the events it held back.
type rateLog struct {
	mu   sync.Mutex
	keys map[string]*rateLogKey
}

type rateLogKey struct {
	last time.Time
	held int
}

// allow reports whether to log an event of key at now and, if so, how
// many events of key were held back since the last line (this one
// included).
func (r *rateLog) allow(key string, now time.Time) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]*rateLogKey{}
	}
	k := r.keys[key]
	if k == nil {
		k = &rateLogKey{}
		r.keys[key] = k
	}
	k.held++
	if !k.last.IsZero() && now.Sub(k.last) < refusalLogInterval {
		return 0, false
	}
	n := k.held
	k.last, k.held = now, 0
	return n, true
}

// sourceOf is the client's IP address (IPv4-mapped addresses unmapped),
// or the zero Addr for a listener that is not IP.
func sourceOf(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// listenerKind says what a client connection came in on.
type listenerKind int

const (
	listenerPlain listenerKind = iota
	listenerTLS
	listenerWebSocket
)

func (k listenerKind) String() string {
	switch k {
	case listenerTLS:
		return "tls"
	case listenerWebSocket:
		return "websocket"
	}
	return "plain"
}

func kindOf(secure bool) listenerKind {
	if secure {
		return listenerTLS
	}
	return listenerPlain
}

// untrackConn forgets a connection that finished its handshake (it is
// then either closed or owned by a channel).
func (p *Proxy) untrackConn(c net.Conn) {
	p.mu.Lock()
	p.untrackConnLocked(c)
	p.mu.Unlock()
}

func (p *Proxy) untrackConnLocked(c net.Conn) {
	if w, ok := c.(*wsConn); ok && w.tcp != nil {
		c = w.tcp.Conn // the WebSocket's TCP connection is what was tracked
	}
	src, ok := p.conns[c]
	if !ok {
		return
	}
	delete(p.conns, c)
	if src.IsValid() {
		if p.perSource[src]--; p.perSource[src] <= 0 {
			delete(p.perSource, src)
		}
	}
}

// accept takes the next connection of ln. It returns ok false once ln is
// closed (or the proxy closing), and a nil conn after a temporary error
// (EMFILE…), having backed off: an accept loop never spins.
func (p *Proxy) accept(ln net.Listener, backoff *time.Duration) (net.Conn, bool) {
	c, err := ln.Accept()
	if err == nil {
		*backoff = 0
		return c, true
	}
	p.mu.Lock()
	closing := p.closing
	_, tracked := p.listeners[ln]
	p.mu.Unlock()
	if closing || !tracked || errors.Is(err, net.ErrClosed) {
		return nil, false
	}
	*backoff = min(max(2**backoff, 5*time.Millisecond), time.Second)
	p.Logger.Warn("accept failed", "listener", ln.Addr().String(), "err", err, "retry_in", *backoff)
	time.Sleep(*backoff)
	return nil, true
}
