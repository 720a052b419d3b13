package proxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
	"github.com/spiceharness/spiceharness/proxy/store"
)

func TestSessionThroughProxy(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	s, m := e.session(t, ctx, 0)
	if s.ID != e.server(0).SessionID() {
		t.Fatalf("client session %#x, backend session %#x: MAIN_INIT not forwarded verbatim", s.ID, e.server(0).SessionID())
	}
	// The client sees the backend's real caps for main.
	if !s.Main.Reply.ChannelCaps.Equal(spicetest.ServerChannelCaps(spice.ChannelMain)) {
		t.Fatalf("main caps offered %v, backend has %v", s.Main.Reply.ChannelCaps, spicetest.ServerChannelCaps(spice.ChannelMain))
	}
	if s.Main.Reply.CommonCaps.Has(spice.CapAuthSASL) || !s.Main.Reply.CommonCaps.Equal(spice.Caps{0x0b}) {
		t.Fatalf("proxy common caps %v, want 0x0b (never SASL)", s.Main.Reply.CommonCaps)
	}
	disp, err := s.Open(ctx, spice.ChannelDisplay, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !disp.Reply.ChannelCaps.Equal(spicetest.ServerChannelCaps(spice.ChannelDisplay)) {
		t.Fatalf("display caps %v, backend has %v", disp.Reply.ChannelCaps, spicetest.ServerChannelCaps(spice.ChannelDisplay))
	}
	disp.InitDisplay()
	if _, _, err := disp.WaitFirstDraw(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(ctx, spice.ChannelCursor, 0); err != nil {
		t.Fatal(err)
	}
	in.Type("hi")
	eventually(t, 5*time.Second, "keys at the backend", func() bool { return len(e.server(0).KeysDown()) == 2 })
	if got := e.server(0).KeysDown(); got[0] != 0x23 || got[1] != 0x17 {
		t.Fatalf("backend got KEY_DOWN %#x, want [0x23 0x17]", got)
	}
	info, err := e.store.Session(m.SessionID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != "active" || len(info.Channels) != 4 {
		t.Fatalf("session %+v: want active with 4 channels", info)
	}
}

func TestPlainListenerAnswersNeedSecured(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	d := e.dialer(e.mint(0).Token)
	d.Port = e.proxy.PlainAddr().Port
	s, err := d.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Main.FollowedNeedSecured {
		t.Fatal("the plain listener did not answer NEED_SECURED")
	}
	// Without a TLS port the client is told NEED_SECURED in the reply.
	d2 := &spice.Dialer{Host: "127.0.0.1", Port: e.proxy.PlainAddr().Port, Password: "x"}
	_, err = d2.Connect(ctx)
	if !errors.Is(err, spice.ErrNeedSecured) {
		t.Fatalf("plain-only client: got %v, want NEED_SECURED", err)
	}
}

func TestAllowPlain(t *testing.T) {
	e := newEnv(t, func(p *proxy.Proxy) { p.AllowPlain = true })
	s, err := (&spice.Dialer{Host: "127.0.0.1", Port: e.proxy.PlainAddr().Port, Password: e.mint(0).Token}).Connect(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Main.Secure || s.Main.FollowedNeedSecured {
		t.Fatal("AllowPlain should serve the session on the plain listener")
	}
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, nil, &spicetest.Server{}, &spicetest.Server{})
	ctx := ctxT(t)
	used := e.mint(0)
	live, err := e.dialer(used.Token).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	other := e.mint(1)
	otherLive, err := e.dialer(other.Token).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer otherLive.Close()
	expired := e.mint(0)

	backendLinks := func() int64 { return e.server(0).Links.Load() + e.server(1).Links.Load() }
	before := backendLinks()
	e.clock.off = 2 * time.Minute // past the one-minute TTL of `expired`

	cases := []struct {
		name   string
		token  string
		connID uint32
		typ    spice.ChannelType
		want   spice.LinkErr
	}{
		{"unknown token", strings.Repeat("A", 48), 0, spice.ChannelMain, spice.ErrPermissionDenied},
		{"replayed token on a new main", used.Token, 0, spice.ChannelMain, spice.ErrPermissionDenied},
		{"expired token", expired.Token, 0, spice.ChannelMain, spice.ErrPermissionDenied},
		{"display naming another session", used.Token, otherLive.ID, spice.ChannelDisplay, spice.ErrBadConnectionID},
		{"display with connection id 0", used.Token, 0, spice.ChannelDisplay, spice.ErrBadConnectionID},
		{"token of another console on this session", other.Token, live.ID, spice.ChannelDisplay, spice.ErrBadConnectionID},
		{"main with a non-zero connection id", used.Token, live.ID, spice.ChannelMain, spice.ErrBadConnectionID},
		{"expired token for a channel of no session", expired.Token, live.ID, spice.ChannelInputs, spice.ErrPermissionDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.dialer(tc.token).DialChannel(ctx, tc.connID, tc.typ, 0)
			var le *spice.LinkError
			if !errors.As(err, &le) || le.Step != spice.StepLinkResult || le.Code != tc.want {
				t.Fatalf("got %v, want link result %v", err, tc.want)
			}
		})
	}
	if got := backendLinks(); got != before {
		t.Fatalf("refused links reached the backend: %d backend links during refusals", got-before)
	}
	// Channels of a live session keep working after its token expired.
	if _, err := live.Open(ctx, spice.ChannelCursor, 0); err != nil {
		t.Fatalf("channel of a live session after token expiry: %v", err)
	}
}

func TestBackendRefusalReachesClient(t *testing.T) {
	e := newEnv(t, nil)
	// qemu's ticket changed behind the store's back: qemu refuses it.
	e.server(0).Password = "rotated"
	_, err := e.dialer(e.mint(0).Token).Connect(ctxT(t))
	var le *spice.LinkError
	if !errors.As(err, &le) || le.Step != spice.StepLinkResult || le.Code != spice.ErrPermissionDenied {
		t.Fatalf("got %v, want the backend's PERMISSION_DENIED as link result", err)
	}
}

func TestBackendDownIsAnErrorNotAHang(t *testing.T) {
	e := newEnv(t, nil)
	e.server(0).Close()
	start := time.Now()
	_, err := e.dialer(e.mint(0).Token).Connect(ctxT(t))
	var le *spice.LinkError
	if !errors.As(err, &le) || le.Step != spice.StepLinkResult || le.Code != spice.ErrLinkGeneric {
		t.Fatalf("got %v, want link result ERROR", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refused backend took %v to report", d)
	}
	// The token was not burnt by the failed attempt.
	if _, err := e.store.Authorize("nope", true, 0); err == nil {
		t.Fatal("unknown token authorised")
	}
}

func TestSilentBackendHitsDeadline(t *testing.T) {
	e := newEnv(t, func(p *proxy.Proxy) { p.BackendTimeout = 300 * time.Millisecond }, &spicetest.Server{Silent: true})
	start := time.Now()
	_, err := e.dialer(e.mint(0).Token).Connect(ctxT(t))
	if !errors.Is(err, spice.ErrLinkGeneric) {
		t.Fatalf("got %v, want link result ERROR", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("silent backend took %v; the 300 ms backend deadline did not fire", d)
	}
}

func TestAbusiveClientsDoNotDisturbASession(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	tlsAddr := e.proxy.TLSAddr().String()

	// A client that connects and says nothing, one that fails TLS, and one
	// that sends a header claiming 4 GiB after a valid link.
	silent, err := net.Dial("tcp", tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	garbage, err := net.Dial("tcp", tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	garbage.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	defer garbage.Close()

	s, err := e.dialer(e.mint(0).Token).Connect(ctx)
	if err != nil {
		t.Fatalf("a real session failed beside a silent and a TLS-garbage client: %v", err)
	}
	defer s.Close()
	in, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A header claiming 4 GiB on the inputs channel closes that channel only.
	in.Conn.Write(spice.AppendHeader(nil, spice.Header{Type: spice.MsgcInputsKeyDown, Size: 0xffffffff}, true))
	select {
	case <-in.Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the proxy kept a channel open after a 4 GiB header")
	}
	cur, err := s.Open(ctx, spice.ChannelCursor, 0)
	if err != nil {
		t.Fatalf("session unusable after the abusive channel: %v", err)
	}
	if _, err := cur.WaitFor(ctx, spice.MsgCursorInit); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, e, "spice_proxy_firewall_verdicts_total", "channel", "inputs", "direction", "to_server", "verdict", "blocked"); got != 1 {
		t.Fatalf("firewall blocked verdicts = %v, want 1", got)
	}
}

func TestDisplayDroppedBeforeInitIsGuarded(t *testing.T) {
	e := newEnv(t, nil)
	// Link display through the proxy and drop the TCP connection at once,
	// without the Go client's own guard.
	raw := rawDisplay(t, e)
	raw.Close()
	waitChannelClosed(t, e, "display:0")
	if e.server(0).Crashed.Load() {
		t.Fatal("the proxy closed qemu's display channel before DISPLAY_INIT (crashes spice-server 0.15)")
	}
	if got := metric(t, e, "spice_proxy_display_init_injected_total"); got != 1 {
		t.Fatalf("display_init_injected = %v, want 1", got)
	}
}

func TestDisplayClosedRightAfterInitIsGuarded(t *testing.T) {
	// DISPLAY_INIT followed at once by a close also crashes spice-server:
	// the proxy must wait for qemu's answer before closing upstream.
	e := newEnv(t, nil, &spicetest.Server{DisplayInitDelay: 200 * time.Millisecond})
	raw := rawDisplay(t, e)
	raw.Write(append(spice.AppendHeader(nil, spice.Header{Type: spice.MsgcDisplayInit, Size: 14}, true), spice.DefaultDisplayInit.Marshal()...))
	raw.Close()
	waitChannelClosed(t, e, "display:0")
	if e.server(0).Crashed.Load() {
		t.Fatal("the proxy closed qemu's display channel before qemu answered DISPLAY_INIT")
	}
	if got := metric(t, e, "spice_proxy_display_init_injected_total"); got != 0 {
		t.Fatalf("display_init_injected = %v, want 0 (the client sent its own)", got)
	}
}

// rawDisplay opens a session on console 0 and links its display channel
// through the proxy on a bare TLS socket (no Go-client guard), returning
// that socket.
func rawDisplay(t *testing.T, e *env) net.Conn {
	t.Helper()
	s, m := e.session(t, ctxT(t), 0)
	d := e.dialer(m.Token)
	raw, err := tls.Dial("tcp", e.proxy.TLSAddr().String(), spice.TLSConfig(d.CA, "127.0.0.1", d.HostSubject))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := spice.Link(raw, &spice.LinkMess{ConnectionID: s.ID, ChannelType: spice.ChannelDisplay, CommonCaps: spice.DefaultCommonCaps}, m.Token, spice.LinkOptions{}); err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestTerminateClosesEveryChannelFast(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	s, m := e.session(t, ctx, 0)
	var chans []*spice.Channel
	for _, typ := range []spice.ChannelType{spice.ChannelDisplay, spice.ChannelInputs, spice.ChannelCursor} {
		c, err := s.Open(ctx, typ, 0)
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, c)
	}
	chans[0].InitDisplay()
	chans = append(chans, s.Main)
	start := time.Now()
	n, err := e.store.Terminate(m.SessionID)
	if err != nil || n != 4 {
		t.Fatalf("Terminate closed %d channels, %v; want 4", n, err)
	}
	for _, c := range chans {
		select {
		case <-c.Done():
		case <-time.After(time.Second):
			t.Fatalf("%s still open 1 s after terminate", c.ID)
		}
	}
	t.Logf("terminate → all 4 client channels closed in %v", time.Since(start))
	if _, err := s.Open(ctx, spice.ChannelCursor, 0); !errors.Is(err, spice.ErrBadConnectionID) {
		t.Fatalf("joining a terminated session: got %v, want BAD_CONNECTION_ID", err)
	}
}

func TestShutdownDrains(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	s, err := e.dialer(e.mint(0).Token).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The session ends on its own once Shutdown is draining (its
	// listeners closed).
	go func() {
		for e.proxy.Stats().Listening {
			time.Sleep(5 * time.Millisecond)
		}
		s.Close()
	}()
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := e.proxy.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown did not drain a session that ended on its own: %v", err)
	}
	if _, err := net.DialTimeout("tcp", e.proxy.TLSAddr().String(), time.Second); err == nil {
		t.Fatal("TLS listener still accepting after Shutdown")
	}
	// A session that does not end is cut at the deadline.
	e2 := newEnv(t, nil)
	s2, err := e2.dialer(e2.mint(0).Token).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	sctx2, cancel2 := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel2()
	if err := e2.proxy.Shutdown(sctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown with a live session: got %v, want the deadline", err)
	}
	select {
	case <-s2.Main.Done():
	case <-time.After(time.Second):
		t.Fatal("live session not cut after the drain deadline")
	}
}

func TestRelayStreamsAndReframes(t *testing.T) {
	for _, noMini := range []bool{false, true} {
		t.Run("backend_without_mini="+strconv.FormatBool(noMini), func(t *testing.T) {
			const n, size = 300, 32 << 10
			e := newEnv(t, nil, &spicetest.Server{StreamBytes: n * size, StreamMessageSize: size, NoMiniHeader: noMini})
			ctx := ctxT(t)
			s, _ := e.session(t, ctx, 0)
			disp, err := s.Open(ctx, spice.ChannelDisplay, 0)
			if err != nil {
				t.Fatal(err)
			}
			if !disp.Mini {
				t.Fatal("client leg should use mini headers")
			}
			disp.InitDisplay()
			got := 0
			for got < n {
				m, err := disp.Recv(ctx)
				if err != nil {
					t.Fatalf("after %d of %d streamed messages: %v", got, n, err)
				}
				if m.Type == spice.MsgDisplayDrawCopy && len(m.Body) == size {
					got++
				}
			}
		})
	}
}

func TestFirewallModes(t *testing.T) {
	for _, mode := range []proxy.FirewallMode{proxy.FirewallEnforce, proxy.FirewallWarn} {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEnv(t, func(p *proxy.Proxy) { p.Firewall = mode })
			ctx := ctxT(t)
			s, _ := e.session(t, ctx, 0)
			in, err := s.Open(ctx, spice.ChannelInputs, 0)
			if err != nil {
				t.Fatal(err)
			}
			// 304 (DRAW_COPY) is a display message: not allowed on inputs.
			in.Send(304, []byte{1, 2, 3})
			in.KeyPress(0x23)
			if mode == proxy.FirewallEnforce {
				select {
				case <-in.Done():
				case <-time.After(3 * time.Second):
					t.Fatal("enforce: channel not closed after a disallowed message")
				}
				if len(e.server(0).KeysDown()) != 0 {
					t.Fatal("enforce: a message after the violation reached the backend")
				}
				return
			}
			eventually(t, 3*time.Second, "the key after a warned message", func() bool { return len(e.server(0).KeysDown()) == 1 })
		})
	}
}

func TestHostileLinkMessages(t *testing.T) {
	e := newEnv(t, nil)
	good := (&spice.LinkMess{ChannelType: spice.ChannelMain, CommonCaps: spice.Caps{0x0d}, ChannelCaps: spice.Caps{0xf}}).Marshal()
	mut := func(off int, v uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	cases := []struct {
		name string
		send []byte
		want spice.LinkErr
	}{
		{"bad magic", mut(0, 0xdeadbeef), spice.ErrInvalidMagic},
		{"major 1", mut(4, 1), spice.ErrVersionMismatch},
		{"major 3", mut(4, 3), spice.ErrVersionMismatch},
		{"size 0", mut(12, 0), spice.ErrInvalidData},
		{"size 4GiB", mut(12, 0xffffffff), spice.ErrInvalidData},
		{"caps_offset in header", mut(16+14, 4), spice.ErrInvalidData},
		{"caps words 2^31", mut(16+6, 1<<31), spice.ErrInvalidData},
		{"channel type 42", func() []byte { b := bytes.Clone(good); b[16+4] = 42; return b }(), spice.ErrChannelNotAvailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", e.proxy.TLSAddr().String(), &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			c.Write(tc.send)
			r, err := spice.ReadLinkReply(c, spice.DefaultMaxLinkSize)
			if err != nil {
				t.Fatal(err)
			}
			if r.Error != tc.want {
				t.Fatalf("got %v, want %v", r.Error, tc.want)
			}
			if _, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Fatalf("socket not closed after the error reply: %v", err)
			}
		})
	}
}

// metric reads one series of the proxy's metric name, given every label
// of it as name, value pairs, with prometheus/testutil.
func metric(t *testing.T, e *env, name string, labels ...string) float64 {
	t.Helper()
	return testutil.ToFloat64(proxy.Series(e.proxy, name, labels...))
}

// waitChannelClosed waits for the store's channel_closed event of ch
// (recorded after the proxy closed both legs).
func waitChannelClosed(t *testing.T, e *env, ch string) {
	t.Helper()
	eventually(t, 5*time.Second, ch+" to close", func() bool {
		for _, ev := range e.store.Audit() {
			if ev.Kind == store.EventChannelClosed && strings.HasPrefix(ev.Detail, ch+" ") {
				return true
			}
		}
		return false
	})
}

// TestTerminateRightAfterTheLinkResult: a terminate that runs the moment
// the client was told OK counts and closes that channel. The channel is
// attached to its session before the OK goes out; attached afterwards,
// the terminate answered 1 channel here (main only), and a loaded
// machine hit that window in TestTerminateSession of proxy/api.
func TestTerminateRightAfterTheLinkResult(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	s, m := e.session(t, ctx, 0)
	counted := make(chan int, 1)
	e.proxy.SetTrace(func(ev proxy.TraceEvent) {
		if ev.Step == proxy.TraceClientResult && ev.Channel == spice.ChannelInputs {
			n, err := e.store.Terminate(m.SessionID)
			if err != nil {
				t.Error(err)
			}
			counted <- n
		}
	})
	in, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatalf("the client was told OK before the terminate: %v", err)
	}
	if n := <-counted; n != 2 {
		t.Errorf("terminate counted %d channels, want 2 (main and the inputs channel just told OK)", n)
	}
	for _, c := range []*spice.Channel{s.Main, in} {
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still open 10 s after terminate", c.ID)
		}
	}
}
