package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/spiceharness/spiceharness/internal/mutant"
)

// wsCloseTimeout bounds a close handshake: writing our close frame and
// waiting for the peer's. A peer that does not answer is cut then.
const wsCloseTimeout = 300 * time.Millisecond

// wsActivity is the last time any WebSocket of one session carried a
// byte (unix nanos), shared by its sockets.
type wsActivity struct {
	last atomic.Int64
	refs int // guarded by Proxy.mu
}

// wsConn is an upgraded WebSocket as the net.Conn the link handshake and
// relay take: Read returns the payload of the client's binary messages in
// order (message boundaries mean nothing to SPICE), each Write is one
// binary message. A text message closes it with 1003, a message over
// MaxMessage with 1009. A deadline that passes closes it with 1008 (the
// handshake's is the only one set on it: the relay's idle limit is the
// session's, WebSocketConfig.IdleTimeout).
type wsConn struct {
	p     *Proxy
	c     *websocket.Conn
	tcp   *wsTCP
	token string

	ctx    context.Context // ends when the connection closes
	cancel context.CancelFunc
	reader io.Reader // the current message

	last    atomic.Int64 // this socket's last byte, unix nanos
	act     atomic.Pointer[wsActivity]
	session string // the store session it is attached to (attach)

	mu        sync.Mutex
	closed    bool
	deadline  *time.Timer
	idle      *time.Timer
	closeOnce sync.Once
}

func newWSConn(p *Proxy, c *websocket.Conn, tcp *wsTCP, token string) *wsConn {
	w := &wsConn{p: p, c: c, tcp: tcp, token: token}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.touch()
	return w
}

func (w *wsConn) touch() {
	now := time.Now().UnixNano()
	w.last.Store(now)
	if a := w.act.Load(); a != nil {
		a.last.Store(now)
	}
}

// errTextMessage: a client sent a text message.
var errTextMessage = errors.New("proxy: a text WebSocket message: SPICE rides in binary messages only")

func (w *wsConn) Read(b []byte) (int, error) {
	for {
		if w.reader == nil {
			typ, r, err := w.c.Reader(w.ctx)
			if err != nil {
				switch websocket.CloseStatus(err) {
				case websocket.StatusNormalClosure, websocket.StatusGoingAway, websocket.StatusNoStatusRcvd:
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.MessageBinary && !mutant.On(w.p, mutant.WSTextFramesAsData) {
				w.closeWith(websocket.StatusUnsupportedData, "SPICE over WebSocket takes binary messages only")
				return 0, errTextMessage
			}
			w.reader = r
		}
		n, err := w.reader.Read(b)
		if n > 0 {
			w.touch()
		}
		if err == io.EOF {
			w.reader = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		if err != nil {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (w *wsConn) Write(b []byte) (int, error) {
	if err := w.c.Write(w.ctx, websocket.MessageBinary, b); err != nil {
		return 0, err
	}
	w.touch()
	return len(b), nil
}

// Close ends the WebSocket with 1000 (a channel that ended: its peer
// closed, the session was terminated, the proxy shut down).
func (w *wsConn) Close() error {
	w.closeWith(websocket.StatusNormalClosure, "")
	return nil
}

// refuse closes a connection whose SPICE link was refused (after the
// link error went out in SPICE), with 1008 and the result.
func (w *wsConn) refuse(result string) {
	w.closeWith(websocket.StatusPolicyViolation, "SPICE link refused: "+result)
}

// closeWith sends a close frame with code and reason and waits up to
// wsCloseTimeout for the peer's, then closes the TCP connection. Safe
// from any goroutine, once.
func (w *wsConn) closeWith(code websocket.StatusCode, reason string) {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		if w.deadline != nil {
			w.deadline.Stop()
		}
		if w.idle != nil {
			w.idle.Stop()
		}
		w.mu.Unlock()
		w.detach()
		if w.tcp != nil {
			w.tcp.SetDeadline(time.Now().Add(wsCloseTimeout))
		}
		w.c.Close(code, reason)
		w.c.CloseNow()
		w.cancel()
		if w.tcp != nil {
			w.tcp.Close()
		}
	})
}

func (w *wsConn) LocalAddr() net.Addr {
	if w.tcp != nil {
		return w.tcp.LocalAddr()
	}
	return wsAddr{}
}

func (w *wsConn) RemoteAddr() net.Addr {
	if w.tcp != nil {
		return w.tcp.RemoteAddr()
	}
	return wsAddr{}
}

// SetDeadline arms a timer that closes the WebSocket with 1008 at t (the
// zero time disarms it). Read and write deadlines are the same timer.
func (w *wsConn) SetDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deadline != nil {
		w.deadline.Stop()
		w.deadline = nil
	}
	if !t.IsZero() && !w.closed {
		w.deadline = time.AfterFunc(time.Until(t), func() {
			w.closeWith(websocket.StatusPolicyViolation, "SPICE link not completed within the handshake deadline")
		})
	}
	return nil
}

func (w *wsConn) SetReadDeadline(t time.Time) error  { return w.SetDeadline(t) }
func (w *wsConn) SetWriteDeadline(t time.Time) error { return w.SetDeadline(t) }

// attach joins the socket to its store session's activity and starts the
// session idle limit (WebSocketConfig.IdleTimeout), once it relays.
func (w *wsConn) attach(session string) {
	p := w.p
	p.mu.Lock()
	if p.ws.sessions == nil {
		p.ws.sessions = map[string]*wsActivity{}
	}
	a := p.ws.sessions[session]
	if a == nil {
		a = &wsActivity{}
		a.last.Store(time.Now().UnixNano())
		p.ws.sessions[session] = a
	}
	a.refs++
	w.session = session
	w.act.Store(a)
	p.mu.Unlock()
	w.touch()
	if idle := p.WebSocket.IdleTimeout; idle > 0 {
		w.mu.Lock()
		if !w.closed {
			w.idle = time.AfterFunc(idle, w.checkIdle)
		}
		w.mu.Unlock()
	}
}

func (w *wsConn) detach() {
	a := w.act.Load()
	if a == nil {
		return
	}
	p := w.p
	p.mu.Lock()
	if a.refs--; a.refs <= 0 && p.ws.sessions[w.session] == a {
		delete(p.ws.sessions, w.session)
	}
	p.mu.Unlock()
}

// checkIdle closes the socket when its session has been quiet for
// IdleTimeout, else checks again when it could be.
func (w *wsConn) checkIdle() {
	idle := w.p.WebSocket.IdleTimeout
	last := w.last.Load()
	if a := w.act.Load(); a != nil && !mutant.On(w.p, mutant.WSIdlePerSocket) {
		last = a.last.Load()
	}
	quiet := time.Since(time.Unix(0, last))
	if quiet >= idle {
		w.p.Logger.Info("websocket closed: session idle", "remote", w.RemoteAddr().String(), "session", w.session, "idle_timeout", idle)
		w.closeWith(websocket.StatusGoingAway, fmt.Sprintf("session idle for %v", idle))
		return
	}
	w.mu.Lock()
	if !w.closed {
		w.idle.Reset(idle - quiet)
	}
	w.mu.Unlock()
}

type wsAddr struct{}

func (wsAddr) Network() string { return "websocket" }
func (wsAddr) String() string  { return "websocket" }
