package scenarios

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// wsLane is what the browser tier's scenarios need of a target.
var wsLane = []harness.Capability{harness.CapWebSocket}

// fetchWS fetches vm's WebSocket endpoint.
func fetchWS(ctx context.Context, t harness.T, env *harness.Env, vm *harness.VM) *harness.VVResponse {
	t.Helper()
	f, err := env.FetchVV(ctx, harness.WS, vm)
	require.NoError(t, err, "fetch the WebSocket endpoint of %s", vm)
	require.NotEmpty(t, f.WebSocketURL, "the WebSocket endpoint has no URL")
	return f
}

// wsRefusal says how err is a refusal of a WebSocket client: an HTTP
// error status before the upgrade, a SPICE link error, or a close (with
// or without a close frame). A hang (a timeout) is none.
func wsRefusal(err error) (string, bool) {
	var we *spice.WebSocketError
	var le *spice.LinkError
	switch {
	case err == nil:
		return "", false
	case errors.As(err, &we) && we.Status >= 400:
		return fmt.Sprintf("HTTP %d before the upgrade", we.Status), true
	case errors.As(err, &le) && le.Code != spice.LinkOK:
		return fmt.Sprintf("SPICE link error %v at %s", le.Code, le.Step), true
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return "", false
	}
	if code, reason := spice.WebSocketCloseStatus(err); code >= 0 {
		return fmt.Sprintf("closed with %d %q", code, reason), true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return "closed", true
	}
	return "", false
}

// wantWSRefused fails t unless err is a refusal (wsRefusal).
func wantWSRefused(t harness.T, err error, what string) {
	t.Helper()
	how, ok := wsRefusal(err)
	if !ok {
		t.Fatalf("%s: want a refusal (an HTTP error before the upgrade, a SPICE link error or a close), got %v", what, err)
	}
	t.Logf("%s: refused (%s)", what, how)
}

// rawWS is a WebSocket client driven frame by frame, for what no library
// sends: text frames carrying SPICE, a frame announcing a gigabyte, an
// upgrade head that never ends.
type rawWS struct {
	c  net.Conn
	br *bufio.Reader
	// closed says how the gateway closed ("" while it has not).
	closed string
}

// dialRaw opens a TCP (or TLS, unverified: a hostile client checks
// nothing) connection to the gateway of rawURL.
func dialRaw(ctx context.Context, rawURL string) (net.Conn, *url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"ws": "80", "wss": "443"}[u.Scheme]
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, nil, err
	}
	if u.Scheme == "wss" {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname()})
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, nil, err
		}
		c = tc
	}
	return c, u, nil
}

// upgradeRaw upgrades a raw connection to f's gateway as spice-html5
// would (subprotocol binary, f's Origin).
func upgradeRaw(ctx context.Context, f *harness.VVResponse) (*rawWS, error) {
	c, u, err := dialRaw(ctx, f.WebSocketURL)
	if err != nil {
		return nil, err
	}
	var key [16]byte
	rand.Read(key[:])
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: binary\r\n",
		u.RequestURI(), u.Host, base64.StdEncoding.EncodeToString(key[:]))
	if f.WebSocketOrigin != "" {
		req += "Origin: " + f.WebSocketOrigin + "\r\n"
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reading the upgrade answer: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("the gateway answered the upgrade with HTTP %d", resp.StatusCode)
	}
	c.SetDeadline(time.Time{})
	return &rawWS{c: c, br: br}, nil
}

// WebSocket opcodes.
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
)

// writeHeader writes a masked, final frame header of op announcing n
// payload bytes, and returns the mask the payload must be XORed with.
func (r *rawWS) writeHeader(op byte, n uint64) ([4]byte, error) {
	b := []byte{0x80 | op}
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, n)
	}
	var mask [4]byte
	rand.Read(mask[:])
	_, err := r.c.Write(append(b, mask[:]...))
	return mask, err
}

// writeFrame writes one masked, final frame of op carrying p.
func (r *rawWS) writeFrame(op byte, p []byte) error {
	mask, err := r.writeHeader(op, uint64(len(p)))
	if err != nil {
		return err
	}
	m := make([]byte, len(p))
	for i := range p {
		m[i] = p[i] ^ mask[i%4]
	}
	_, err = r.c.Write(m)
	return err
}

// readFrame reads one frame from the gateway (unmasked), its payload up
// to 1 MiB.
func (r *rawWS) readFrame() (op byte, p []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("a frame of %d bytes from the gateway", n)
	}
	p = make([]byte, n)
	if _, err = io.ReadFull(r.br, p); err != nil {
		return 0, nil, err
	}
	op = h[0] & 0x0f
	if op == opClose && r.closed == "" {
		// Answer it, as a browser does: a gateway may wait for that
		// before it ends the connection.
		code := -1
		if len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		r.closed = fmt.Sprintf("close frame %d", code)
		r.writeFrame(opClose, p[:min(len(p), 2)])
	}
	return op, p, nil
}

// closedWithin reads until the gateway closes (a close frame or the end
// of the connection) and says how, failing after d.
func (r *rawWS) closedWithin(d time.Duration) (string, error) {
	r.c.SetReadDeadline(time.Now().Add(d))
	for r.closed == "" {
		if _, _, err := r.readFrame(); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return "", fmt.Errorf("still open after %v", d)
			}
			return "closed without a close frame", nil
		}
	}
	return r.closed, nil
}

func (r *rawWS) Close() error { return r.c.Close() }

// frameConn is a net.Conn over r: each Write one frame of op, Read the
// payload of the gateway's data frames in order (a close frame or the
// end of the connection is io.EOF).
type frameConn struct {
	*rawWS
	op   byte
	rest []byte
}

func (f *frameConn) Write(p []byte) (int, error) {
	if err := f.writeFrame(f.op, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *frameConn) Read(p []byte) (int, error) {
	for len(f.rest) == 0 {
		op, payload, err := f.readFrame()
		if err != nil {
			return 0, err
		}
		if op == opClose {
			return 0, io.EOF
		}
		if op == opText || op == opBinary || op == 0 {
			f.rest = payload
		}
	}
	n := copy(p, f.rest)
	f.rest = f.rest[n:]
	return n, nil
}

func (f *frameConn) LocalAddr() net.Addr                { return f.c.LocalAddr() }
func (f *frameConn) RemoteAddr() net.Addr               { return f.c.RemoteAddr() }
func (f *frameConn) SetDeadline(t time.Time) error      { return f.c.SetDeadline(t) }
func (f *frameConn) SetReadDeadline(t time.Time) error  { return f.c.SetReadDeadline(t) }
func (f *frameConn) SetWriteDeadline(t time.Time) error { return f.c.SetWriteDeadline(t) }

// byteConn writes every Write one byte at a time (each its own segment:
// the TCP connection has no delay): a WebSocket frame split at every
// byte, which a gateway must reassemble.
type byteConn struct{ net.Conn }

func (b byteConn) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := b.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// byteDialer dials TCP connections that write a byte at a time.
func byteDialer(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return byteConn{c}, nil
}
