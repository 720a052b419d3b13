package spice

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// StepProxy is the LinkError step of a CONNECT through Dialer.Proxy that
// the proxy refused or did not answer.
const StepProxy = "proxy connect"

// MaxProxyResponse bounds the head of an HTTP proxy's answer to CONNECT
// (status line and headers).
const MaxProxyResponse = 8 << 10

// ErrProxyURL: Dialer.Proxy is not an http://HOST:PORT URL.
var ErrProxyURL = errors.New("spice: proxy URL")

// ProxyError is an HTTP proxy's answer to CONNECT other than 2xx, or an
// answer that is not HTTP.
type ProxyError struct {
	// Target is what was asked for (HOST:PORT).
	Target string
	// Status is the HTTP status code (0 when the answer was not HTTP).
	Status int
	// Line is the proxy's status line ("HTTP/1.0 403 Forbidden"), or
	// what was read instead of one (quoted, at most 80 bytes).
	Line string
}

func (e *ProxyError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("spice: the proxy's answer to CONNECT %s is not HTTP: %s", e.Target, e.Line)
	}
	return fmt.Sprintf("spice: the proxy refused CONNECT %s: %s", e.Target, e.Line)
}

// ParseProxyURL checks an HTTP proxy URL as spice-gtk takes it (a .vv's
// proxy= or SPICE_PROXY): http://HOST:PORT, optionally with user:password
// (sent as Basic Proxy-Authorization); the port defaults to 3128, as in
// spice-gtk. It returns the proxy's address and the authorization header
// value ("" for none).
func ParseProxyURL(raw string) (addr, auth string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("%w %q: %v", ErrProxyURL, redactURL(raw), err)
	}
	if u.Scheme != "http" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", "", fmt.Errorf("%w %q: want http://HOST:PORT", ErrProxyURL, redactURL(raw))
	}
	port := u.Port()
	if port == "" {
		port = "3128"
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", "", fmt.Errorf("%w %q: bad port", ErrProxyURL, redactURL(raw))
	}
	if u.User != nil {
		pw, _ := u.User.Password()
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw))
	}
	return net.JoinHostPort(u.Hostname(), port), auth, nil
}

// redactURL hides a password in a proxy URL for messages.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	if i := strings.LastIndexByte(raw, '@'); i >= 0 {
		return "…" + raw[i:]
	}
	return raw
}

// DialProxy opens a TCP connection to target (HOST:PORT; HOST may be an
// opaque name only the proxy understands, such as a signed tunnel host)
// through the HTTP proxy at proxyURL, the way spice-gtk does through
// GLib's HTTP proxy support:
//
//	CONNECT target HTTP/1.0
//	Host: target
//	Proxy-Connection: keep-alive
//	User-Agent: GLib/2.74
//	[Proxy-Authorization: Basic …]
//
// then it waits for an HTTP/1.x 2xx answer and its blank line. The
// connection it returns carries the tunnel, nothing of the answer left
// in it. A refusal is a *ProxyError; ctx bounds the whole exchange.
func DialProxy(ctx context.Context, proxyURL, target string) (net.Conn, error) {
	addr, auth, err := ParseProxyURL(proxyURL)
	if err != nil {
		return nil, err
	}
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := proxyConnect(ctx, conn, target, auth); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// dialTCP opens the TCP connection of a channel to the host's port:
// straight, or through Proxy. It returns the step that failed.
func (d *Dialer) dialTCP(ctx context.Context, port int) (net.Conn, string, error) {
	target := net.JoinHostPort(d.Host, strconv.Itoa(port))
	if d.Proxy == "" {
		c, err := d.netDial(ctx, "tcp", target)
		if err == nil && d.QuickAck {
			c = withQuickAck(c)
		}
		return c, StepDial, err
	}
	addr, auth, err := ParseProxyURL(d.Proxy)
	if err != nil {
		return nil, StepDial, err
	}
	c, err := d.netDial(ctx, "tcp", addr)
	if err != nil {
		return nil, StepDial, fmt.Errorf("the proxy %s: %w", redactURL(d.Proxy), err)
	}
	if err := proxyConnect(ctx, c, target, auth); err != nil {
		c.Close()
		return nil, StepProxy, err
	}
	return c, "", nil
}

func proxyConnect(ctx context.Context, conn net.Conn, target, auth string) error {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	var req strings.Builder
	fmt.Fprintf(&req, "CONNECT %s HTTP/1.0\r\nHost: %s\r\nProxy-Connection: keep-alive\r\nUser-Agent: GLib/2.74\r\n", target, target)
	if auth != "" {
		req.WriteString("Proxy-Authorization: " + auth + "\r\n")
	}
	req.WriteString("\r\n")
	if _, err := conn.Write([]byte(req.String())); err != nil {
		return ctxErr(ctx, err)
	}
	// Byte by byte up to the blank line: the tunnel starts right after
	// it, and what the server sends first (TLS, a link reply) must stay
	// in the connection.
	head := make([]byte, 0, 128)
	var b [1]byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) && !bytes.HasSuffix(head, []byte("\n\n")) {
		if len(head) >= MaxProxyResponse {
			return &ProxyError{Target: target, Line: fmt.Sprintf("more than %d bytes without a blank line", MaxProxyResponse)}
		}
		if _, err := conn.Read(b[:]); err != nil {
			if len(head) > 0 {
				if pe := parseProxyStatus(target, head); pe != nil && pe.Status != 0 {
					return pe // a refusal, then the proxy closed
				}
			}
			return fmt.Errorf("spice: reading the proxy's answer to CONNECT %s: %w", target, ctxErr(ctx, err))
		}
		head = append(head, b[0])
	}
	conn.SetDeadline(time.Time{})
	if pe := parseProxyStatus(target, head); pe != nil {
		return pe
	}
	return nil
}

// parseProxyStatus returns nil for an HTTP/1.x 2xx status line, else the
// *ProxyError.
func parseProxyStatus(target string, head []byte) *ProxyError {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	line = bytes.TrimRight(line, "\r")
	pe := &ProxyError{Target: target, Line: quoteShort(line)}
	proto, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || !bytes.HasPrefix(proto, []byte("HTTP/1.")) || len(rest) < 3 {
		return pe
	}
	code, err := strconv.Atoi(string(rest[:3]))
	if err != nil || code < 100 || code > 999 || (len(rest) > 3 && rest[3] != ' ') {
		return pe
	}
	pe.Status, pe.Line = code, string(line)
	if code/100 == 2 {
		return nil
	}
	return pe
}

func quoteShort(b []byte) string {
	if len(b) > 80 {
		b = b[:80]
	}
	return strconv.Quote(string(b))
}

// ctxErr prefers ctx's error to the deadline error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return errors.Join(ctx.Err(), err)
	}
	return err
}
