package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/spiceharness/spiceharness/internal/mutant"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
)

// Defaults for the zero values of WebSocketConfig.
const (
	DefaultWebSocketPath = "/spice"
	// DefaultWebSocketMaxMessage bounds one WebSocket message from a
	// client. spice-html5 sends each SPICE message in a message of its
	// own, and the largest a client sends are agent and port data chunks
	// of a few KiB; SPICE's own limits apply to what it carries.
	DefaultWebSocketMaxMessage = 1 << 20
)

// Events of the WebSocket listener in the audit log.
const (
	// EventWebSocketRefused: an upgrade refused before any SPICE byte
	// (bad origin, unknown or spent token). Never carries the token.
	EventWebSocketRefused store.EventKind = "websocket_refused"
)

// WebSocketConfig configures the WebSocket listener (StartWebSocket), the
// browser family of SPICE gateways: spice-html5 opens one WebSocket per
// SPICE channel, to the same URL, and speaks the SPICE byte stream in
// binary messages inside it. The zero value works.
//
// The credential. The URL's token (`?token=`) and the SPICE ticket are
// one and the same store token, minted per session like a proxy `.vv`'s
// password (spice-html5 sends its `password` as the ticket): the URL lets
// the listener refuse an unknown, expired or finished token with HTTP 403
// before the upgrade; the ticket, checked in the SPICE link exactly as on
// the SPICE listeners, is what opens the session (the main channel
// consumes the token; other channels present it with the session's id,
// as spice-html5 does on every channel's socket). A ticket that is not
// the URL's token is refused.
type WebSocketConfig struct {
	// Path is the URL path clients upgrade on ("": DefaultWebSocketPath).
	Path string
	// Origins are the Origin values (scheme://host[:port]) allowed besides
	// the listener's own (the Host the request names); "*" allows any. A
	// request without Origin (a non-browser client) is allowed: Origin
	// protects browsers from pages of other sites, not the listener from
	// programs. Any other origin gets 403 before the upgrade.
	Origins []string
	// UpgradeTimeout bounds reading the HTTP request head of the upgrade
	// (0: the proxy's HandshakeTimeout). The SPICE link that follows has
	// the proxy's HandshakeTimeout of its own, from the upgrade.
	UpgradeTimeout time.Duration
	// IdleTimeout closes a session's WebSockets once none of them carried
	// a byte for that long (0: never). It is per session, not per socket:
	// inputs and cursor are legitimately silent for minutes while the
	// display paints, and a per-socket timeout there leaves a console that
	// looks alive but takes no keys.
	IdleTimeout time.Duration
	// MaxMessage bounds one message from a client in bytes (0:
	// DefaultWebSocketMaxMessage); a larger one closes the WebSocket with
	// 1009 (message too big).
	MaxMessage int64
}

// TokenChecker is a Store that can say, without spending it, whether a
// token may still open a channel: one minted and unexpired, or one whose
// session is live. *store.Store implements it; the WebSocket listener
// uses it to refuse before the upgrade.
type TokenChecker interface {
	CheckToken(token string) error
}

// wsState is the WebSocket listener's live state, guarded by Proxy.mu.
type wsState struct {
	addr     *net.TCPAddr
	servers  []*http.Server
	sessions map[string]*wsActivity // by store session id
}

func (p *Proxy) wsPath() string {
	if p.WebSocket.Path != "" {
		return p.WebSocket.Path
	}
	return DefaultWebSocketPath
}

func (p *Proxy) wsUpgradeTimeout() time.Duration {
	if mutant.On(p, mutant.WSNoUpgradeDeadline) {
		return 0
	}
	if p.WebSocket.UpgradeTimeout > 0 {
		return p.WebSocket.UpgradeTimeout
	}
	if p.HandshakeTimeout > 0 {
		return p.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

// StartWebSocket listens on addr for WebSocket upgrades and serves them
// in the background until Shutdown or Close.
func (p *Proxy) StartWebSocket(addr string) error {
	if p.init(); p.initErr != nil {
		return p.initErr
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("proxy: WebSocket listener on %s: %w", addr, err)
	}
	srv, err := p.trackWebSocket(ln)
	if err != nil {
		return err
	}
	p.wg.Add(1)
	go func() { defer p.wg.Done(); srv.Serve(&wsListener{Listener: ln, p: p}) }()
	return nil
}

// ServeWebSocket serves WebSocket upgrades on ln until it is closed. It
// returns nil after Shutdown or Close.
func (p *Proxy) ServeWebSocket(ln net.Listener) error {
	if p.init(); p.initErr != nil {
		return p.initErr
	}
	srv, err := p.trackWebSocket(ln)
	if err != nil {
		return err
	}
	p.wg.Add(1)
	defer p.wg.Done()
	if err := srv.Serve(&wsListener{Listener: ln, p: p}); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

func (p *Proxy) trackWebSocket(ln net.Listener) (*http.Server, error) {
	srv := &http.Server{
		Handler:           http.HandlerFunc(p.serveWebSocket),
		ReadHeaderTimeout: p.wsUpgradeTimeout(),
		MaxHeaderBytes:    8 << 10,
		ConnContext:       func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, wsTCPKey{}, c) },
		// net/http's own complaints (bad requests, hijack errors) at
		// debug level on the proxy's logger, not on stderr.
		ErrorLog: slog.NewLogLogger(p.Logger.Handler(), slog.LevelDebug),
	}
	srv.SetKeepAlivesEnabled(false)
	if err := p.trackListener(ln, func(a *net.TCPAddr) { p.ws.addr = a }); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.ws.servers = append(p.ws.servers, srv)
	p.mu.Unlock()
	return srv, nil
}

// WebSocketAddr is the WebSocket listener's address (nil before
// StartWebSocket).
func (p *Proxy) WebSocketAddr() *net.TCPAddr { p.mu.Lock(); defer p.mu.Unlock(); return p.ws.addr }

// WebSocketURL is the URL a client of session token uses on the
// WebSocket listener, reached at host:port.
func (p *Proxy) WebSocketURL(host string, port int, token string) string {
	u := url.URL{Scheme: "ws", Host: net.JoinHostPort(host, fmt.Sprint(port)), Path: p.wsPath(), RawQuery: url.Values{"token": {token}}.Encode()}
	return u.String()
}

// closeWebSocketServers stops the HTTP servers of the WebSocket
// listeners (requests still in their head); upgraded connections are the
// proxy's own to close.
func (p *Proxy) closeWebSocketServers() {
	p.mu.Lock()
	srvs := p.ws.servers
	p.mu.Unlock()
	for _, s := range srvs {
		s.Close()
	}
}

type wsTCPKey struct{}

// wsListener admits TCP connections like the SPICE listeners do: under
// MaxHandshakes and MaxHandshakesPerSource, tracked as connections in
// their handshake until the channel relays or the connection closes.
type wsListener struct {
	net.Listener
	p *Proxy
}

func (l *wsListener) Accept() (net.Conn, error) {
	p := l.p
	var backoff time.Duration
	for {
		c, ok := p.accept(l.Listener, &backoff)
		if !ok {
			return nil, net.ErrClosed
		}
		if c == nil {
			continue
		}
		src := sourceOf(c)
		p.mu.Lock()
		if p.closing {
			p.mu.Unlock()
			c.Close()
			return nil, net.ErrClosed
		}
		reason, limit := p.admitLocked(src)
		if reason != "" {
			p.mu.Unlock()
			c.Close()
			p.refused(listenerWebSocket.String(), src, reason, limit)
			continue
		}
		p.conns[c] = src
		if src.IsValid() {
			p.perSource[src]++
		}
		p.mu.Unlock()
		return &wsTCP{Conn: c, p: p}, nil
	}
}

// wsTCP is an admitted TCP connection of the WebSocket listener; closing
// it forgets it.
type wsTCP struct {
	net.Conn
	p    *Proxy
	once sync.Once
}

func (c *wsTCP) Close() error {
	c.once.Do(func() { c.p.untrackConn(c.Conn) })
	return c.Conn.Close()
}

// Results of WebSocket upgrades (metric labels).
const (
	wsUpgradeOK       = "ok"
	wsNotFound        = "not_found"
	wsNotWebSocket    = "not_websocket"
	wsOriginRefused   = "origin_refused"
	wsTokenRefused    = "token_refused"
	wsUpgradeFailed   = "upgrade_failed"
	wsShutdownRefused = "shutdown"
)

// serveWebSocket judges an upgrade request (path, origin, token), then
// upgrades it and runs the SPICE link and relay on it as on the other
// listeners. Refusals before the upgrade are plain HTTP errors with a
// short text: nothing about consoles or tokens.
func (p *Proxy) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	tcp, _ := r.Context().Value(wsTCPKey{}).(*wsTCP)
	log := p.Logger.With("remote", r.RemoteAddr, "listener", listenerWebSocket.String())
	refuse := func(status int, result, msg string, args ...any) {
		p.metrics.wsUpgrades.WithLabelValues(result).Inc()
		log.Info("websocket upgrade refused", append([]any{"result", result, "status", status}, args...)...)
		if result == wsOriginRefused || result == wsTokenRefused {
			p.Store.Record(store.Event{Kind: EventWebSocketRefused, Detail: fmt.Sprintf("%s (HTTP %d) from %s", result, status, r.RemoteAddr)})
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		fmt.Fprintln(w, msg)
	}
	if r.URL.Path != p.wsPath() {
		refuse(http.StatusNotFound, wsNotFound, "not found: the SPICE WebSocket endpoint is "+p.wsPath())
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		refuse(http.StatusBadRequest, wsNotWebSocket, "this is a SPICE WebSocket endpoint: open it with a WebSocket client (spice-html5), subprotocol "+spice.WebSocketSubprotocol)
		return
	}
	if origin := r.Header.Get("Origin"); !p.originAllowed(origin, r.Host) {
		refuse(http.StatusForbidden, wsOriginRefused, "origin not allowed", "origin", origin)
		return
	}
	token := r.URL.Query().Get("token")
	if tc, ok := p.Store.(TokenChecker); ok {
		if err := tc.CheckToken(token); err != nil {
			refuse(http.StatusForbidden, wsTokenRefused, "token refused", "err", err.Error())
			return
		}
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols: []string{spice.WebSocketSubprotocol},
		// The origin was judged above, against Origins.
		InsecureSkipVerify: true,
	})
	if err != nil {
		p.metrics.wsUpgrades.WithLabelValues(wsUpgradeFailed).Inc()
		log.Info("websocket upgrade failed", "err", err)
		return
	}
	max := p.WebSocket.MaxMessage
	if max <= 0 {
		max = DefaultWebSocketMaxMessage
	}
	c.SetReadLimit(max)
	wc := newWSConn(p, c, tcp, token)
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		p.metrics.wsUpgrades.WithLabelValues(wsShutdownRefused).Inc()
		wc.closeWith(websocket.StatusGoingAway, "proxy shutting down")
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	p.metrics.wsUpgrades.WithLabelValues(wsUpgradeOK).Inc()
	p.handleClient(wc, listenerWebSocket) // owns wc until the channel ends
}

// originAllowed: no Origin (not a browser), the listener's own origin,
// or one of WebSocket.Origins.
func (p *Proxy) originAllowed(origin, host string) bool {
	if origin == "" || mutant.On(p, mutant.WSNoOriginCheck) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if (u.Scheme == "http" || u.Scheme == "https") && strings.EqualFold(u.Host, host) {
		return true
	}
	for _, a := range p.WebSocket.Origins {
		if a == "*" || strings.EqualFold(strings.TrimSuffix(a, "/"), origin) {
			return true
		}
	}
	return false
}
