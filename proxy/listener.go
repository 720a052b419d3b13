package proxy

import (
	"errors"
	"net"
	"time"
)

// acceptLoop accepts until ln is closed. Every connection is handled on
// its own goroutine under the handshake deadline, so a silent client or
// a failed TLS handshake never delays another accept.
func (p *Proxy) acceptLoop(ln net.Listener, secure bool) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			p.mu.Lock()
			closing := p.closing
			_, tracked := p.listeners[ln]
			p.mu.Unlock()
			if closing || !tracked || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Temporary errors (EMFILE…): back off, never spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.Logger.Warn("accept failed", "listener", ln.Addr().String(), "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		p.mu.Lock()
		if p.closing {
			p.mu.Unlock()
			c.Close()
			return nil
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.handleClient(c, secure)
	}
}

func listenerName(secure bool) string {
	if secure {
		return "tls"
	}
	return "plain"
}

// untrackConn forgets a connection that finished its handshake (it is
// then either closed or owned by a channel).
func (p *Proxy) untrackConn(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
