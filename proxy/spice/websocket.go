package spice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/coder/websocket"
)

// WebSocketSubprotocol is the subprotocol spice-html5 asks for on every
// channel's WebSocket (`new WebSocket(uri, 'binary')` in its
// spiceconn.js); websockify selects it when offered. The SPICE byte
// stream rides in binary messages, split and merged freely: SPICE's own
// framing does not follow the WebSocket's.
const WebSocketSubprotocol = "binary"

// StepWebSocket is the LinkError step of a WebSocket upgrade that the
// gateway refused or did not answer.
const StepWebSocket = "websocket upgrade"

// ErrWebSocketURL: Dialer.WebSocket is not a ws:// or wss:// URL.
var ErrWebSocketURL = errors.New("spice: WebSocket URL")

// WebSocketError is a gateway's answer to the upgrade other than 101.
type WebSocketError struct {
	// URL is the gateway, scheme and host only (the path and query may
	// carry a token).
	URL string
	// Status is the HTTP status code (0 when there was no HTTP answer).
	Status int
	Err    error
}

func (e *WebSocketError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("spice: the WebSocket gateway %s refused the upgrade: HTTP %d %s", e.URL, e.Status, http.StatusText(e.Status))
	}
	return fmt.Sprintf("spice: WebSocket upgrade at %s: %v", e.URL, e.Err)
}

func (e *WebSocketError) Unwrap() error { return e.Err }

// ParseWebSocketURL checks a gateway URL (ws:// or wss://) and returns
// it with its host and scheme only, for messages: the rest may carry a
// token.
func ParseWebSocketURL(raw string) (*url.URL, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("%w: not a URL (want ws://HOST:PORT/PATH or wss://…)", ErrWebSocketURL)
	}
	if (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, "", fmt.Errorf("%w %s://%s: want ws://HOST:PORT/PATH or wss://…", ErrWebSocketURL, u.Scheme, u.Host)
	}
	return u, u.Scheme + "://" + u.Host, nil
}

// WebSocketCloseStatus is the close code a WebSocket peer sent, found in
// err (a channel's error, a LinkError), or -1 when there is none.
func WebSocketCloseStatus(err error) (code int, reason string) {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return int(ce.Code), ce.Reason
	}
	return -1, ""
}

// dialWebSocket opens the WebSocket of one channel: an HTTP upgrade to
// d.WebSocket asking for the "binary" subprotocol, with d.Origin as the
// Origin header, over d.DialContext's TCP connection (TLS for wss://,
// checked against d.CA). The connection it returns carries the SPICE
// byte stream: each Write is one binary message, Read returns the
// payload of the binary messages in order. It lives until closed (ctx
// bounds the upgrade only).
func (d *Dialer) dialWebSocket(ctx context.Context) (net.Conn, error) {
	u, short, err := ParseWebSocketURL(d.WebSocket)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{DialContext: d.netDial, ForceAttemptHTTP2: false, Proxy: nil}
	if u.Scheme == "wss" {
		name := d.ServerName
		if name == "" {
			name = u.Hostname()
		}
		tr.TLSClientConfig = TLSConfig(d.CA, name, d.HostSubject)
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	defer tr.CloseIdleConnections()
	h := http.Header{}
	if d.Origin != "" {
		h.Set("Origin", d.Origin)
	}
	c, resp, err := websocket.Dial(ctx, d.WebSocket, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: tr},
		HTTPHeader:   h,
		Subprotocols: []string{WebSocketSubprotocol},
	})
	if err != nil {
		we := &WebSocketError{URL: short, Err: redactErr(err, d.WebSocket)}
		if resp != nil {
			we.Status = resp.StatusCode
		}
		return nil, we
	}
	// No limit on what the gateway sends in one message: SPICE's framing
	// bounds messages (Dialer.MaxMessageSize), not the WebSocket's.
	return websocket.NetConn(context.Background(), c, websocket.MessageBinary), nil
}

// netDial is the TCP dialer of every channel.
func (d *Dialer) netDial(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.DialContext != nil {
		return d.DialContext(ctx, network, addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

// redactErr replaces the URL (which may carry a token) in err's text.
func redactErr(err error, rawURL string) error {
	msg := err.Error()
	if !strings.Contains(msg, rawURL) {
		return err
	}
	_, short, _ := ParseWebSocketURL(rawURL)
	return &redacted{msg: strings.ReplaceAll(msg, rawURL, short+"/…"), err: err}
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }

// Unwrap keeps the cause for errors.Is and As; its own text is not
// shown by this package.
func (r *redacted) Unwrap() error { return r.err }
