package proxy_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// wsEnv is newEnv with the WebSocket listener on.
func wsEnv(t *testing.T, configure func(*proxy.Proxy)) *env {
	t.Helper()
	e := newEnv(t, configure)
	if err := e.proxy.StartWebSocket("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) wsURL(token string) string {
	return e.proxy.WebSocketURL("127.0.0.1", e.proxy.WebSocketAddr().Port, token)
}

func (e *env) wsDialer(token string) *spice.Dialer {
	return &spice.Dialer{WebSocket: e.wsURL(token), Password: token}
}

func TestWebSocketSession(t *testing.T) {
	e := wsEnv(t, nil)
	ctx := ctxT(t)
	m := e.mint(0)
	s, err := e.wsDialer(m.Token).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ID != e.server(0).SessionID() {
		t.Fatalf("client session %#x, backend session %#x", s.ID, e.server(0).SessionID())
	}
	disp, err := s.Open(ctx, spice.ChannelDisplay, 0)
	if err != nil {
		t.Fatal(err)
	}
	disp.InitDisplay()
	if _, _, err := disp.WaitFirstDraw(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatal(err)
	}
	in.Type("hi")
	eventually(t, 5*time.Second, "keys at the backend", func() bool { return len(e.server(0).KeysDown()) == 2 })
	if got := metric(t, e, "spice_proxy_websocket_upgrades_total", "result", "ok"); got != 3 {
		t.Fatalf("unexpected upgrades ok: %v, want 3", got)
	}
	// Relaying channels are no longer handshakes: Shutdown drains them
	// instead of cutting them with the handshakes.
	if st := e.proxy.Stats(); st.Handshaking != 0 || st.Channels != 3 {
		t.Fatalf("unexpected stats %+v: want 0 handshaking, 3 channels", st)
	}
}

// A used token opens no second session: the upgrade passes (its session
// lives, and other channels present it), the SPICE link is refused, and
// the socket closes with 1008.
func TestWebSocketTokenReplayRefused(t *testing.T) {
	e := wsEnv(t, nil)
	ctx := ctxT(t)
	m := e.mint(0)
	s, err := e.wsDialer(m.Token).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = e.wsDialer(m.Token).Connect(ctx)
	var le *spice.LinkError
	if !errors.As(err, &le) || le.Code != spice.ErrPermissionDenied {
		t.Fatalf("unexpected replay outcome: %v", err)
	}
}

// Unknown tokens and foreign origins get 403 before the upgrade.
func TestWebSocketRefusedBeforeUpgrade(t *testing.T) {
	e := wsEnv(t, nil)
	ctx := ctxT(t)
	for _, c := range []struct {
		name, token, origin string
	}{
		{"unknown token", "nope", ""},
		{"foreign origin", e.mint(0).Token, "http://evil.example"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := e.wsDialer(c.token)
			d.Origin = c.origin
			_, err := d.Connect(ctx)
			var we *spice.WebSocketError
			if !errors.As(err, &we) || we.Status != http.StatusForbidden {
				t.Fatalf("unexpected outcome (want HTTP 403): %v", err)
			}
			if strings.Contains(err.Error(), c.token) && c.token != "nope" {
				t.Fatalf("the error shows the token: %v", err)
			}
		})
	}
	// The listener's own origin is allowed.
	d := e.wsDialer(e.mint(0).Token)
	d.Origin = "http://" + e.proxy.WebSocketAddr().String()
	s, err := d.Connect(ctx)
	if err != nil {
		t.Fatalf("same-origin session: %v", err)
	}
	s.Close()
}

// A text message closes the socket with 1003 before anything reaches
// the backend; a message over MaxMessage, with 1009.
func TestWebSocketHostileMessages(t *testing.T) {
	e := wsEnv(t, func(p *proxy.Proxy) { p.WebSocket.MaxMessage = 4096 })
	ctx := ctxT(t)
	dial := func() *websocket.Conn {
		conn, _, err := websocket.Dial(ctx, e.wsURL(e.mint(0).Token), &websocket.DialOptions{Subprotocols: []string{"binary"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.CloseNow() })
		return conn
	}
	closeStatus := func(conn *websocket.Conn) websocket.StatusCode {
		for {
			if _, _, err := conn.Read(ctx); err != nil {
				return websocket.CloseStatus(err)
			}
		}
	}
	link := (&spice.LinkMess{ChannelType: spice.ChannelMain, CommonCaps: spice.DefaultCommonCaps}).Marshal()
	conn := dial()
	conn.Write(ctx, websocket.MessageText, link)
	if got := closeStatus(conn); got != websocket.StatusUnsupportedData {
		t.Fatalf("unexpected close status after a text message %v, want 1003", got)
	}
	if n := e.server(0).Sessions(); n != 0 {
		t.Fatalf("%d sessions reached the backend", n)
	}

	// A linked main channel, then one message of 1400 small SPICE
	// messages (8400 bytes): the relay reads past MaxMessage.
	m := e.mint(0)
	wc, _, err := websocket.Dial(ctx, e.wsURL(m.Token), &websocket.DialOptions{Subprotocols: []string{"binary"}})
	if err != nil {
		t.Fatal(err)
	}
	nc := websocket.NetConn(ctx, wc, websocket.MessageBinary)
	defer nc.Close()
	if _, err := spice.Link(nc, &spice.LinkMess{ChannelType: spice.ChannelMain, CommonCaps: spice.DefaultCommonCaps}, m.Token, spice.LinkOptions{}); err != nil {
		t.Fatal(err)
	}
	var big []byte
	for range 1400 {
		big = spice.AppendHeader(big, spice.Header{Type: spice.MsgcMainAttachChannels}, true)
	}
	nc.Write(big)
	_, err = io.Copy(io.Discard, nc)
	if got, _ := spice.WebSocketCloseStatus(err); got != int(websocket.StatusMessageTooBig) {
		t.Fatalf("unexpected close after an oversized message: %v (status %d, want 1009)", err, got)
	}
}

// A client that upgrades and never sends its link is cut at the
// handshake deadline with 1008; one that never finishes its HTTP head,
// by the upgrade deadline.
func TestWebSocketDeadlines(t *testing.T) {
	e := wsEnv(t, func(p *proxy.Proxy) { p.HandshakeTimeout = 300 * time.Millisecond })
	ctx := ctxT(t)
	conn, _, err := websocket.Dial(ctx, e.wsURL(e.mint(0).Token), &websocket.DialOptions{Subprotocols: []string{"binary"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	_, _, err = conn.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusPolicyViolation {
		t.Fatalf("unexpected close status %v (want 1008): %v", got, err)
	}
	raw, err := net.Dial("tcp", e.proxy.WebSocketAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprintf(raw, "GET /spice HTTP/1.1\r\nHost: x\r\n")
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, bufio.NewReader(raw)); err != nil {
		t.Fatalf("the half-sent upgrade was not cut by the upgrade deadline: %v", err)
	}
}

// A session's quiet inputs socket outlives the idle limit while another
// socket of the session carries bytes.
func TestWebSocketIdleIsPerSession(t *testing.T) {
	// 1 s: the loop below must get the CPU every 50 ms; with a shorter
	// limit a loaded 2-core machine (make test beside other runs) starves
	// it past the limit now and then.
	const idle = time.Second
	e := wsEnv(t, func(p *proxy.Proxy) { p.WebSocket.IdleTimeout = idle })
	ctx := ctxT(t)
	m := e.mint(0)
	s, err := e.wsDialer(m.Token).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := s.Open(ctx, spice.ChannelCursor, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Main carries a message every 50 ms for 3 idle limits.
	for end := time.Now().Add(3 * idle); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := s.Main.Send(spice.MsgcMainAttachChannels, nil); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-in.Done():
		t.Fatalf("inputs closed while main was busy: %v", in.Err())
	case <-cur.Done():
		t.Fatalf("cursor closed while main was busy: %v", cur.Err())
	default:
	}
	// All quiet: the session's sockets close.
	select {
	case <-in.Done():
	case <-ctx.Done():
		t.Fatal("inputs still open after the whole session was idle")
	}
}
