package proxy_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// dialFrom opens a TCP connection to addr from the loopback address src
// (127.0.0.0/8 is all loopback on Linux: a second client address without
// leaving the machine). The connection is closed by the test's cleanup.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// holdHandshakes opens n connections from src that send nothing, and
// waits until the proxy counts them in its handshake set.
func holdHandshakes(t *testing.T, e *env, src string, n int) []net.Conn {
	t.Helper()
	before := e.proxy.Stats().Handshaking
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = dialFrom(t, src, e.proxy.PlainAddr().String())
	}
	eventually(t, 5*time.Second, "the held connections in the handshake set", func() bool {
		return e.proxy.Stats().Handshaking == before+n
	})
	return conns
}

// wantClosedAtOnce reads from c and wants EOF or a reset with nothing
// received. The read deadline only bounds a failing test: the proxy's
// handshake deadline in these tests is a minute, so a connection that
// was admitted instead of refused stays open past it.
func wantClosedAtOnce(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(10 * time.Second))
	got := readOne(c)
	if errors.Is(got.Err, syscall.ECONNRESET) {
		got.Err = io.EOF // a reset is a close too
	}
	if diff := cmp.Diff(readResult{0, io.EOF}, got, cmpopts.EquateErrors()); diff != "" {
		t.Fatalf("unexpected read on a connection over the limit (-want +got):\n%s", diff)
	}
	return time.Since(start)
}

// readResult is what one Read returned.
type readResult struct {
	N   int
	Err error
}

func readOne(c net.Conn) readResult {
	n, err := c.Read(make([]byte, 1))
	return readResult{n, err}
}

// longHandshakes keeps held connections in their handshake for the
// whole test.
func longHandshakes(p *proxy.Proxy) { p.HandshakeTimeout = time.Minute }

func TestHandshakeLimitGlobal(t *testing.T) {
	const limit = 3
	e := newEnv(t, func(p *proxy.Proxy) {
		longHandshakes(p)
		p.MaxHandshakes, p.MaxHandshakesPerSource = limit, -1
	})
	ctx := ctxT(t)
	s, _ := e.session(t, ctx, 0) // established before: not a handshake
	held := holdHandshakes(t, e, "", limit)

	took := wantClosedAtOnce(t, dialFrom(t, "", e.proxy.PlainAddr().String()))
	// The TLS listener shares the cap.
	wantClosedAtOnce(t, dialFrom(t, "", e.proxy.TLSAddr().String()))
	for _, tc := range []struct {
		listener string
		want     float64
	}{{"plain", 1}, {"tls", 1}} {
		if got := metric(t, e, "spice_proxy_connections_refused_total", "listener", tc.listener, "reason", "handshake_limit"); got != tc.want {
			t.Errorf("unexpected refusals on %s (-want +got):\n%s", tc.listener, cmp.Diff(tc.want, got))
		}
	}
	// The established session is untouched: its main channel still
	// answers.
	if _, err := s.ChannelsList(ctx); err != nil {
		t.Fatalf("the established session after refusals: %v", err)
	}
	if st := e.proxy.Stats(); st.Handshaking != limit || st.Channels != 1 {
		t.Errorf("unexpected stats (-want +got):\n%s", cmp.Diff(proxy.Stats{Listening: true, Handshaking: limit, Channels: 1}, st))
	}
	// A slot freed is a slot usable: the session opens a channel.
	held[0].Close()
	eventually(t, 5*time.Second, "the freed handshake slot", func() bool { return e.proxy.Stats().Handshaking == limit-1 })
	if _, err := s.Open(ctx, spice.ChannelInputs, 0); err != nil {
		t.Fatalf("a link after a slot was freed: %v", err)
	}
	t.Logf("a connection over MaxHandshakes=%d was closed %v after connecting", limit, took.Round(time.Microsecond))
}

func TestHandshakeLimitPerSource(t *testing.T) {
	const limit = 2
	e := newEnv(t, func(p *proxy.Proxy) {
		longHandshakes(p)
		p.MaxHandshakes, p.MaxHandshakesPerSource = -1, limit
	})
	holdHandshakes(t, e, "127.0.0.1", limit)
	wantClosedAtOnce(t, dialFrom(t, "127.0.0.1", e.proxy.PlainAddr().String()))
	if got := metric(t, e, "spice_proxy_connections_refused_total", "listener", "plain", "reason", "source_handshake_limit"); got != 1 {
		t.Errorf("unexpected per-source refusals (-want +got):\n%s", cmp.Diff(1.0, got))
	}
	// Another address has its own allowance, and gets a real answer.
	other := holdHandshakes(t, e, "127.0.0.2", limit)
	other[0].Write([]byte{0xde, 0xad, 0xbe, 0xef})
	r, err := spice.ReadLinkReply(other[0], spice.DefaultMaxLinkSize)
	if err != nil || r.Error != spice.ErrInvalidMagic {
		t.Fatalf("the second address's connection: reply %+v, %v; want INVALID_MAGIC", r, err)
	}
	if got := metric(t, e, "spice_proxy_connections_refused_total", "listener", "plain", "reason", "source_handshake_limit"); got != 1 {
		t.Errorf("unexpected per-source refusals after the second address (-want +got):\n%s", cmp.Diff(1.0, got))
	}
}

// TestEarlyRefusal: each link header field is judged as soon as its bytes
// arrive, over real sockets on both listeners. The client sends only the
// bytes that decide and then waits: a proxy that waited for the rest of
// the header would answer nothing until its one-minute deadline.
func TestEarlyRefusal(t *testing.T) {
	e := newEnv(t, longHandshakes)
	hdr := spice.AppendLinkHeader(nil, 26)
	put := func(off int, v uint32) []byte {
		b := bytes.Clone(hdr)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	for _, tc := range []struct {
		name string
		send []byte
		want spice.LinkErr
	}{
		{"bad magic, 4 bytes", put(0, 0xdeadbeef)[:4], spice.ErrInvalidMagic},
		{"an HTTP request line", []byte("GET / HTTP/1.1\r\n"), spice.ErrInvalidMagic},
		{"major 3, 8 bytes", put(4, 3)[:8], spice.ErrVersionMismatch},
		{"size 4 GiB, 16 bytes", put(12, 0xffffffff), spice.ErrInvalidData},
	} {
		for _, secure := range []bool{false, true} {
			name := tc.name + "/plain"
			if secure {
				name = tc.name + "/tls"
			}
			t.Run(name, func(t *testing.T) {
				var c net.Conn
				if secure {
					tc, err := tls.Dial("tcp", e.proxy.TLSAddr().String(), &tls.Config{InsecureSkipVerify: true})
					if err != nil {
						t.Fatal(err)
					}
					defer tc.Close()
					c = tc
				} else {
					c = dialFrom(t, "", e.proxy.PlainAddr().String())
				}
				// Bounds a failing test only (see above).
				c.SetDeadline(time.Now().Add(10 * time.Second))
				start := time.Now()
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
				r, err := spice.ReadLinkReply(c, spice.DefaultMaxLinkSize)
				took := time.Since(start)
				if err != nil {
					t.Fatalf("no link reply to %d bytes: %v", len(tc.send), err)
				}
				if r.Error != tc.want {
					t.Errorf("unexpected link error (-want +got):\n%s", cmp.Diff(tc.want, r.Error))
				}
				if diff := cmp.Diff(readResult{0, io.EOF}, readOne(c), cmpopts.EquateErrors()); diff != "" {
					t.Errorf("unexpected read after the error reply (-want +got):\n%s", diff)
				}
				t.Logf("%s refused %v after its %d bytes", name, took.Round(time.Microsecond), len(tc.send))
			})
		}
	}
}
