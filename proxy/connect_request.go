package proxy

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Results of a CONNECT request: the label of
// spice_proxy_connect_requests_total, and with statusFor the HTTP answer.
const (
	resultOK             = "ok"
	resultBadRequest     = "bad_request"
	resultMethod         = "method_not_allowed"
	resultVersion        = "bad_version"
	resultTooLarge       = "too_large"
	resultLineTooLong    = "line_too_long"
	resultTimeout        = "timeout"
	resultClosed         = "closed"
	resultBusy           = "busy"
	resultUnknownHost    = "unknown_host"
	resultExpired        = "expired"
	resultRevoked        = "revoked"
	resultBadPort        = "bad_port"
	resultBackendError   = "backend_error"
	resultBackendTimeout = "backend_timeout"
	resultShutdown       = "shutdown"
)

// statusFor is the HTTP status of each refusal (closed: none is sent).
var statusFor = map[string]int{
	resultBadRequest:     http.StatusBadRequest,
	resultMethod:         http.StatusMethodNotAllowed,
	resultVersion:        http.StatusHTTPVersionNotSupported,
	resultTooLarge:       http.StatusRequestHeaderFieldsTooLarge,
	resultLineTooLong:    http.StatusRequestURITooLong,
	resultTimeout:        http.StatusRequestTimeout,
	resultBusy:           http.StatusServiceUnavailable,
	resultUnknownHost:    http.StatusForbidden,
	resultExpired:        http.StatusForbidden,
	resultRevoked:        http.StatusForbidden,
	resultBadPort:        http.StatusForbidden,
	resultBackendError:   http.StatusBadGateway,
	resultBackendTimeout: http.StatusGatewayTimeout,
	resultShutdown:       http.StatusServiceUnavailable,
}

// refusal is a CONNECT request the proxy answers with an error.
type refusal struct {
	result string
	msg    string // for the client and the log; never holds the host
}

func refuse(result, format string, args ...any) *refusal {
	return &refusal{result: result, msg: fmt.Sprintf(format, args...)}
}

// httpError renders an HTTP/1.0 error response that closes the
// connection.
func httpError(status int, msg string) []byte {
	body := "spice-harness CONNECT proxy: " + msg + "\n"
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.0 %d %s\r\n", status, http.StatusText(status))
	if status == http.StatusMethodNotAllowed {
		b.WriteString("Allow: CONNECT\r\n")
	}
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	return []byte(b.String())
}

// connectEstablished is the answer to an allowed CONNECT. spice-gtk
// (GLib's GHttpProxy) checks only "HTTP/1.x 200" and the blank line.
var connectEstablished = []byte("HTTP/1.0 200 Connection established\r\n\r\n")

// connectRequest is a parsed CONNECT request head.
type connectRequest struct {
	host string // as sent: a bearer credential, never logged
	port int
}

// readHead reads a request head up to its blank line, within maxHead
// bytes and the connection's deadline. early is what the client sent
// after the head (tunnel data sent ahead of the 200). The request line is
// judged as its bytes arrive (judgeLine), so a client that is not
// speaking HTTP is refused at once, not at the deadline.
func readHead(c net.Conn, maxHead int) (head, early []byte, ref *refusal) {
	buf := make([]byte, 0, min(1024, maxHead+1))
	for {
		if len(buf) == cap(buf) {
			nb := make([]byte, len(buf), min(2*cap(buf), maxHead+1))
			copy(nb, buf)
			buf = nb
		}
		scanFrom := max(0, len(buf)-2)
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if ref := judgeLine(buf); ref != nil {
			return nil, nil, ref
		}
		if end := headEnd(buf, scanFrom); end >= 0 {
			if nl := bytes.IndexByte(buf, '\n'); nl > MaxConnectLine {
				return nil, nil, refuse(resultLineTooLong, "request line over %d bytes", MaxConnectLine)
			}
			if end > maxHead {
				return nil, nil, refuse(resultTooLarge, "request head over %d bytes", maxHead)
			}
			return buf[:end], buf[end:], nil
		}
		if bytes.IndexByte(buf, '\n') < 0 && len(buf) > MaxConnectLine {
			return nil, nil, refuse(resultLineTooLong, "request line over %d bytes", MaxConnectLine)
		}
		if len(buf) > maxHead {
			return nil, nil, refuse(resultTooLarge, "request head over %d bytes", maxHead)
		}
		if err != nil {
			if isTimeout(err) {
				return nil, nil, refuse(resultTimeout, "request head not complete in time")
			}
			return nil, nil, &refusal{result: resultClosed, msg: fmt.Sprintf("client left after %d bytes of head", len(buf))}
		}
	}
}

// judgeLine refuses a request line, complete or not, that cannot become
// a valid one: a byte outside printable ASCII (a TLS ClientHello's 0x16,
// a SPICE link's binary fields), a method that is not an HTTP token, and,
// once its LF arrived, anything parseRequestLine refuses (GET gets its
// 405 before its headers). A well-formed prefix is left to the deadline.
func judgeLine(buf []byte) *refusal {
	line, complete := buf, false
	if nl := bytes.IndexByte(buf, '\n'); nl >= 0 {
		line, complete = bytes.TrimSuffix(buf[:nl], []byte("\r")), true
	} else {
		line = bytes.TrimSuffix(line, []byte("\r")) // its LF may be next
	}
	for _, c := range line {
		if c < 0x20 || c > 0x7e {
			return refuse(resultBadRequest, "request line has a byte 0x%02x (control or not ASCII)", c)
		}
	}
	method, _, _ := bytes.Cut(line, []byte(" "))
	if len(method) > 0 && !isToken(string(method)) {
		return refuse(resultBadRequest, "method is not an HTTP token")
	}
	if !complete {
		return nil
	}
	_, ref := parseRequestLine(string(line))
	return ref
}

// headEnd returns the offset just past the blank line that ends a head
// (CRLF CRLF, or bare LFs), searching for its last LF from `from`; -1
// when there is none yet.
func headEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' || i == 0 {
			continue
		}
		switch {
		case b[i-1] == '\n':
			return i + 1
		case b[i-1] == '\r' && i >= 2 && b[i-2] == '\n':
			return i + 1
		}
	}
	return -1
}

// parseConnect checks a request head: `CONNECT host:port HTTP/1.x`, then
// well-formed header lines (their values are not used).
func parseConnect(head []byte) (connectRequest, *refusal) {
	lines := strings.Split(strings.TrimSuffix(string(head), "\n"), "\n")
	for i := range lines {
		lines[i] = strings.TrimSuffix(lines[i], "\r")
	}
	lines = lines[:len(lines)-1] // the blank line
	if len(lines) == 0 {
		return connectRequest{}, refuse(resultBadRequest, "empty request line")
	}
	req, ref := parseRequestLine(lines[0])
	if ref != nil {
		return req, ref
	}
	headers := lines[1:]
	if len(headers) > MaxConnectHeaders {
		return req, refuse(resultTooLarge, "%d header lines, more than %d", len(headers), MaxConnectHeaders)
	}
	for _, h := range headers {
		if h != "" && (h[0] == ' ' || h[0] == '\t') {
			return req, refuse(resultBadRequest, "folded header line")
		}
		name, value, ok := strings.Cut(h, ":")
		if !ok || !isToken(name) {
			return req, refuse(resultBadRequest, "malformed header line")
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				return req, refuse(resultBadRequest, "header %s has a control character", name)
			}
		}
	}
	return req, nil
}

// parseRequestLine checks `CONNECT host:port HTTP/1.x`.
func parseRequestLine(line string) (connectRequest, *refusal) {
	if line == "" {
		return connectRequest{}, refuse(resultBadRequest, "empty request line")
	}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 || c > 0x7e {
			return connectRequest{}, refuse(resultBadRequest, "request line has a byte 0x%02x (control or not ASCII)", c)
		}
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return connectRequest{}, refuse(resultBadRequest, "request line is not METHOD TARGET VERSION")
	}
	method, target, version := parts[0], parts[1], parts[2]
	if !isToken(method) {
		return connectRequest{}, refuse(resultBadRequest, "method is not an HTTP token")
	}
	switch {
	case version == "HTTP/1.0" || version == "HTTP/1.1":
	case len(version) == 8 && strings.HasPrefix(version, "HTTP/") && isDigit(version[5]) && version[6] == '.' && isDigit(version[7]):
		return connectRequest{}, refuse(resultVersion, "HTTP version %s: only HTTP/1.0 and HTTP/1.1", version)
	default:
		return connectRequest{}, refuse(resultBadRequest, "malformed HTTP version")
	}
	if method != http.MethodConnect {
		return connectRequest{}, refuse(resultMethod, "only CONNECT is served here (a SPICE tunnel proxy; see the .vv's proxy= key)")
	}
	return parseAuthority(target)
}

// parseAuthority parses CONNECT's target, host:port (the host is not
// interpreted here).
func parseAuthority(target string) (connectRequest, *refusal) {
	host, port, err := net.SplitHostPort(target)
	if err != nil || host == "" {
		return connectRequest{}, refuse(resultBadRequest, "target is not host:port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || len(port) > 5 || n < 1 || n > 65535 || port[0] < '0' || port[0] > '9' {
		return connectRequest{}, refuse(resultBadRequest, "target port is not 1-65535")
	}
	return connectRequest{host: host, port: n}, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// answerAndClose answers a refused request and closes its connection
// gracefully (lingerClose): the answer, our FIN, then the client's
// leftovers read and dropped for a short while, so that closing with
// unread data does not reset the connection before the client read the
// answer.
func answerAndClose(c net.Conn, answer []byte) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(answer)
	lingerClose(c, time.Now().Add(lingerTimeout))
	c.Close()
}
