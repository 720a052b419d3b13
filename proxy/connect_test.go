package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/proxy/tunnel"
	"github.com/spiceharness/spiceharness/static"
)

// echoBackend stands for a console's SPICE port in the CONNECT tests: it
// echoes every connection and reports, in accept order, the first line
// each one sent. Accept order is what the "nothing was dialed" barriers
// rely on: a dial the proxy made before answering a refused request is
// accepted before any dial made after the answer.
type echoBackend struct {
	ln       net.Listener
	accepted atomic.Int64
	lines    chan seqLine
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

type seqLine struct {
	seq  int64
	line string
}

func newEchoBackend(t *testing.T) *echoBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &echoBackend{ln: ln, lines: make(chan seqLine, 64)}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			seq := b.accepted.Add(1)
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer c.Close()
				r := bufio.NewReader(c)
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				b.lines <- seqLine{seq, strings.TrimSuffix(line, "\n")}
				c.Write([]byte(line))
				io.Copy(c, r)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *echoBackend) port() int { return b.ln.Addr().(*net.TCPAddr).Port }

// tunEnv is a proxy with a CONNECT listener in front of one console whose
// plain and TLS ports are echo backends.
type tunEnv struct {
	t           *testing.T
	store       *store.Store
	proxy       *proxy.Proxy
	plain, tls  *echoBackend
	key         static.Key
	now         atomic.Int64 // unix nanos of the proxy's tunnel clock
	log         syncbuf.Buffer
	barrierSeq  atomic.Int64
	connectPort int
}

func newTunEnv(t *testing.T, configure func(*proxy.Proxy)) *tunEnv {
	t.Helper()
	e := &tunEnv{t: t, plain: newEchoBackend(t), tls: newEchoBackend(t)}
	e.now.Store(time.Now().UnixNano())
	e.store = store.New(store.Options{})
	e.key = static.Key{Source: "lab", UUID: "00000000-0000-0000-0000-000000000001"}
	e.load(e.plain.port(), e.tls.port())
	e.proxy = &proxy.Proxy{Store: e.store, KeyPoolSize: 1,
		Logger: slog.New(slog.NewTextHandler(&e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	e.proxy.Tunnel.Now = func() time.Time { return time.Unix(0, e.now.Load()) }
	if configure != nil {
		configure(e.proxy)
	}
	if err := e.proxy.StartConnect("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	e.connectPort = e.proxy.ConnectAddr().Port
	t.Cleanup(func() { e.proxy.Close() })
	return e
}

// load (re)loads the console with the given ports.
func (e *tunEnv) load(port, tlsPort int) {
	e.store.Load(static.Source{Name: e.key.Source, Type: static.TypeStatic, Consoles: []static.Console{{
		UUID: e.key.UUID, Name: "vm0", Hypervisor: "localhost", HypervisorIP: "127.0.0.1",
		InsecurePort: port, SecurePort: tlsPort, Ticket: "ticket-0"}}})
}

func (e *tunEnv) advance(d time.Duration) { e.now.Add(int64(d)) }

func (e *tunEnv) sign() string {
	e.t.Helper()
	host, _, err := e.proxy.SignTunnel(e.key, e.plain.port(), e.tls.port())
	if err != nil {
		e.t.Fatal(err)
	}
	return host
}

// response is what a client read back from the CONNECT listener.
type response struct {
	status int // 0: no status line (closed without an answer)
	header http.Header
	body   string
	conn   net.Conn // open, positioned after the head, when status is 200
	rest   *bufio.Reader
}

// send writes raw to the CONNECT listener and reads the answer's head;
// on a refusal it reads to EOF (the proxy must close).
func (e *tunEnv) send(raw []byte) response {
	e.t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.connectPort))
	if err != nil {
		e.t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if len(raw) > 0 {
		if _, err := c.Write(raw); err != nil {
			c.Close()
			e.t.Fatalf("write request: %v", err)
		}
	}
	return e.readResponse(c)
}

func (e *tunEnv) readResponse(c net.Conn) response {
	e.t.Helper()
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return response{}
		}
		e.t.Fatalf("reading the answer: %v", err)
	}
	out := response{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode == http.StatusOK {
		c.SetDeadline(time.Time{})
		out.conn, out.rest = c, r
		e.t.Cleanup(func() { c.Close() })
		return out
	}
	body, _ := io.ReadAll(resp.Body)
	out.body = string(body)
	// The proxy closes after a refusal: EOF, not a timeout.
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		e.t.Errorf("after a %d the connection is not closed: %v", resp.StatusCode, err)
	}
	c.Close()
	return out
}

func connectLine(host string, port int) []byte {
	return fmt.Appendf(nil, "CONNECT %s:%d HTTP/1.0\r\nHost: %s:%d\r\nProxy-Connection: keep-alive\r\nUser-Agent: GLib/2.74\r\n\r\n",
		host, port, host, port)
}

// open makes an allowed tunnel (the request spice-gtk sends) and checks
// it echoes.
func (e *tunEnv) open(host string, port int) response {
	e.t.Helper()
	r := e.send(connectLine(host, port))
	if r.status != http.StatusOK {
		e.t.Fatalf("unexpected answer to an allowed CONNECT (-want +got):\n-200\n+%d %s", r.status, r.body)
	}
	return r
}

func (r response) echo(t *testing.T, line string) {
	t.Helper()
	if _, err := r.conn.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	got, err := r.rest.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("unexpected echo through the tunnel (-want +got):\n-%q\n+%q (%v)", line+"\n", got, err)
	}
}

// barrier proves that nothing dialed b since before: it opens an allowed
// tunnel to b, sends a marker, and requires b's next accepted connection
// to be the one that carries the marker.
func (e *tunEnv) barrier(b *echoBackend, before int64) {
	e.t.Helper()
	marker := fmt.Sprintf("barrier-%d", e.barrierSeq.Add(1))
	r := e.open(e.sign(), b.port())
	r.echo(e.t, marker)
	r.conn.Close()
	for {
		select {
		case sl := <-b.lines:
			if sl.line != marker {
				continue // an earlier tunnel's line
			}
			if sl.seq != before+1 {
				e.t.Fatalf("the backend accepted %d connection(s) before the barrier's: something was dialed", sl.seq-before-1)
			}
			return
		case <-time.After(10 * time.Second):
			e.t.Fatal("the barrier's marker never reached the backend")
		}
	}
}

func (e *tunEnv) metric(name string, labels ...string) float64 {
	e.t.Helper()
	v, err := e.proxy.Metric(name, labels...)
	if err != nil {
		e.t.Fatal(err)
	}
	return v
}

func (e *tunEnv) auditKinds() []store.EventKind {
	var out []store.EventKind
	for _, ev := range e.store.Audit() {
		if strings.HasPrefix(string(ev.Kind), "tunnel_") {
			out = append(out, ev.Kind)
		}
	}
	return out
}

// noHostLeaked fails t if a signed host appears in the log or audit.
func (e *tunEnv) noHostLeaked(hosts ...string) {
	e.t.Helper()
	var audit strings.Builder
	for _, ev := range e.store.Audit() {
		fmt.Fprintf(&audit, "%+v\n", ev)
	}
	for _, h := range hosts {
		for _, part := range []string{h, strings.ToUpper(h), h[:20]} {
			if strings.Contains(e.log.String(), part) || strings.Contains(audit.String(), part) {
				t := e.t
				t.Errorf("a signed host (or 20 characters of it) is in the proxy log or the audit log")
				return
			}
		}
	}
}

func TestConnectTunnelsBothPorts(t *testing.T) {
	e := newTunEnv(t, nil)
	host := e.sign()
	if len(host) != tunnel.HostLen {
		t.Fatalf("host %d characters, want %d", len(host), tunnel.HostLen)
	}
	for _, b := range []*echoBackend{e.plain, e.tls} {
		r := e.open(host, b.port())
		r.echo(t, "hello through "+strconv.Itoa(b.port()))
		// A second write, larger than one splice chunk, comes back whole.
		big := strings.Repeat("x", 200<<10)
		go r.conn.Write([]byte(big + "\n"))
		got, err := r.rest.ReadString('\n')
		if err != nil || len(got) != len(big)+1 {
			t.Fatalf("200 KiB echo: %d bytes, %v", len(got), err)
		}
		r.conn.Close()
	}
	eventually(t, 5*time.Second, "both tunnels closed", func() bool {
		return e.proxy.Stats().Tunnels == 0 && e.metric("spice_proxy_tunnels_active") == 0
	})
	if got := e.metric("spice_proxy_connect_requests_total", "result", "ok"); got != 2 {
		t.Errorf("unexpected ok CONNECT requests (-want +got):\n-2\n+%v", got)
	}
	for _, dir := range []string{"to_server", "to_client"} {
		if got := e.metric("spice_proxy_tunnel_bytes_total", "direction", dir); got < 2*(200<<10) {
			t.Errorf("tunnel bytes %s: %v, want at least %d", dir, got, 2*(200<<10))
		}
	}
	want := []store.EventKind{proxy.EventTunnelClosed, proxy.EventTunnelClosed, proxy.EventTunnelOpened, proxy.EventTunnelOpened}
	got := e.auditKinds()
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unexpected audit events (-want +got):\n%s", diff)
	}
	e.noHostLeaked(host)
	if !strings.Contains(e.log.String(), tunnel.Fingerprint(host)) {
		t.Errorf("the proxy log does not name the host by its fingerprint")
	}
}

// TestConnectRefusals: every request that is not CONNECT to a host this
// proxy signed, unexpired, for a port of its console, is answered with
// its HTTP status and nothing is dialed (barrier on both ports).
func TestConnectRefusals(t *testing.T) {
	e := newTunEnv(t, func(p *proxy.Proxy) { p.Tunnel.HeadTimeout = 5 * time.Second })
	host := e.sign()
	other := &proxy.Proxy{Store: e.store}
	otherHost, _, err := other.SignTunnel(e.key, e.plain.port(), e.tls.port())
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	flip := func(h string, i int) string {
		c := byte('a')
		if h[i] == 'a' {
			c = 'b'
		}
		return h[:i] + string(c) + h[i+1:]
	}
	pp := e.plain.port()
	cases := []struct {
		name   string
		req    string
		status int
		result string
	}{
		{"GET", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"},
		{"lower-case connect", fmt.Sprintf("connect %s:%d HTTP/1.0\r\n\r\n", host, pp), 405, "method_not_allowed"},
		{"qemu's address", fmt.Sprintf("CONNECT 127.0.0.1:%d HTTP/1.0\r\n\r\n", pp), 403, "unknown_host"},
		{"localhost", fmt.Sprintf("CONNECT localhost:%d HTTP/1.0\r\n\r\n", pp), 403, "unknown_host"},
		{"tampered first character", string(connectLine(flip(host, 0), pp)), 403, "unknown_host"},
		{"tampered hint", string(connectLine(flip(host, 5), pp)), 403, "unknown_host"},
		{"tampered ports", string(connectLine(flip(host, 16), pp)), 403, "unknown_host"},
		{"tampered expiry", string(connectLine(flip(host, 30), pp)), 403, "unknown_host"},
		{"tampered MAC", string(connectLine(flip(host, 50), pp)), 403, "unknown_host"},
		{"another proxy's host", string(connectLine(otherHost, pp)), 403, "unknown_host"},
		{"host with a suffix", string(connectLine(host+".example", pp)), 403, "unknown_host"},
		{"port not the console's", string(connectLine(host, 22)), 403, "bad_port"},
		{"the CONNECT port itself", string(connectLine(host, e.connectPort)), 403, "bad_port"},
		{"no port", fmt.Sprintf("CONNECT %s HTTP/1.0\r\n\r\n", host), 400, "bad_request"},
		{"port 0", fmt.Sprintf("CONNECT %s:0 HTTP/1.0\r\n\r\n", host), 400, "bad_request"},
		{"port 65536", fmt.Sprintf("CONNECT %s:65536 HTTP/1.0\r\n\r\n", host), 400, "bad_request"},
		{"port +80", fmt.Sprintf("CONNECT %s:+80 HTTP/1.0\r\n\r\n", host), 400, "bad_request"},
		{"HTTP/2.0", fmt.Sprintf("CONNECT %s:%d HTTP/2.0\r\n\r\n", host, pp), 505, "bad_version"},
		{"no version", fmt.Sprintf("CONNECT %s:%d\r\n\r\n", host, pp), 400, "bad_request"},
		{"two spaces", fmt.Sprintf("CONNECT  %s:%d HTTP/1.0\r\n\r\n", host, pp), 400, "bad_request"},
		{"NUL in the line", fmt.Sprintf("CONNECT %s:%d\x00 HTTP/1.0\r\n\r\n", host, pp), 400, "bad_request"},
		{"folded header", fmt.Sprintf("CONNECT %s:%d HTTP/1.0\r\nHost: a\r\n b\r\n\r\n", host, pp), 400, "bad_request"},
		{"header without colon", fmt.Sprintf("CONNECT %s:%d HTTP/1.0\r\nHost\r\n\r\n", host, pp), 400, "bad_request"},
		{"control in a header", fmt.Sprintf("CONNECT %s:%d HTTP/1.0\r\nX: a\x01b\r\n\r\n", host, pp), 400, "bad_request"},
		{"TLS ClientHello", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n\n", 400, "bad_request"},
		{"SPICE link", "REDQ\x02\x00\x00\x00\x02\x00\x00\x00\n\n", 400, "bad_request"},
		{"empty line only", "\r\n\r\n", 400, "bad_request"},
		// Refused as the line arrives, without the blank line a real
		// client of another protocol never sends (before the change
		// these waited for the 5 s head deadline and got 408).
		{"TLS ClientHello, no blank line", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400, "bad_request"},
		{"SPICE link, no blank line", "REDQ\x02\x00\x00\x00\x02\x00\x00\x00", 400, "bad_request"},
		{"method with a slash, line not ended", "GE/T / HT", 400, "bad_request"},
		{"GET before its headers", "GET / HTTP/1.1\r\n", 405, "method_not_allowed"},
		{"HTTP/2.0 before its headers", fmt.Sprintf("CONNECT %s:%d HTTP/2.0\r\n", host, pp), 505, "bad_version"},
		{"65 headers", fmt.Sprintf("CONNECT %s:%d HTTP/1.0\r\n%s\r\n", host, pp, strings.Repeat("X: y\r\n", 65)), 431, "too_large"},
		{"9 KiB of headers", fmt.Sprintf("CONNECT %s:%d HTTP/1.0\r\nX: %s\r\n\r\n", host, pp, strings.Repeat("y", 9<<10)), 431, "too_large"},
		{"2 KiB request line", fmt.Sprintf("CONNECT %s:%d HTTP/1.0\r\n\r\n", strings.Repeat("h", 2<<10), pp), 414, "line_too_long"},
		{"endless line", strings.Repeat("A", 64<<10), 414, "line_too_long"},
		{"endless header", fmt.Sprintf("CONNECT %s:%d HTTP/1.0\r\nX: %s", host, pp, strings.Repeat("y", 64<<10)), 431, "too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.metric("spice_proxy_connect_requests_total", "result", tc.result)
			plain0, tls0 := e.plain.accepted.Load(), e.tls.accepted.Load()
			r := e.send([]byte(tc.req))
			if r.status != tc.status {
				t.Fatalf("unexpected status (-want +got):\n-%d\n+%d %s", tc.status, r.status, r.body)
			}
			if tc.status == 405 && r.header.Get("Allow") != "CONNECT" {
				t.Errorf("405 without Allow: CONNECT (%v)", r.header)
			}
			if strings.Contains(r.body, host) {
				t.Errorf("the refusal's body repeats the host")
			}
			if got := e.metric("spice_proxy_connect_requests_total", "result", tc.result) - before; got != 1 {
				t.Errorf("unexpected %s count (-want +got):\n-1\n+%v", tc.result, got)
			}
			e.barrier(e.plain, plain0)
			e.barrier(e.tls, tls0)
		})
	}
	e.noHostLeaked(host, otherHost)
}

func TestConnectExpiredHost(t *testing.T) {
	e := newTunEnv(t, func(p *proxy.Proxy) { p.Tunnel.HostTTL = 30 * time.Second })
	host := e.sign()
	live := e.open(host, e.plain.port()) // opened in time
	e.advance(29 * time.Second)
	e.open(host, e.tls.port()).conn.Close()
	e.advance(time.Second)
	plain0 := e.plain.accepted.Load()
	r := e.send(connectLine(host, e.plain.port()))
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "expired") {
		t.Fatalf("unexpected answer to an expired host (-want +got):\n-403 …expired…\n+%d %s", r.status, r.body)
	}
	e.barrier(e.plain, plain0)
	// The tunnel opened in time outlives its host.
	live.echo(t, "still here")
	ev := e.store.Audit()
	last := ev[len(ev)-1]
	for _, x := range ev {
		if x.Kind == proxy.EventTunnelRefused {
			last = x
		}
	}
	if last.Kind != proxy.EventTunnelRefused || last.UUID != e.key.UUID || !strings.Contains(last.Detail, "expired") {
		t.Errorf("no tunnel_refused audit event naming the console and the expiry: %+v", last)
	}
	e.noHostLeaked(host)
}

// TestConnectStalePorts: a host signed for ports the console no longer
// has opens nothing, on old or new ports.
func TestConnectStalePorts(t *testing.T) {
	e := newTunEnv(t, nil)
	host := e.sign()
	moved := newEchoBackend(t)
	e.load(moved.port(), e.tls.port())
	for _, port := range []int{e.plain.port(), moved.port()} {
		if r := e.send(connectLine(host, port)); r.status != http.StatusForbidden {
			t.Errorf("port %d: unexpected status (-want +got):\n-403\n+%d %s", port, r.status, r.body)
		}
	}
	e.barrier(e.tls, 0)
	if moved.accepted.Load() != 0 || e.plain.accepted.Load() != 0 {
		t.Errorf("a stale host reached a backend")
	}
	// Removing the source forgets the console: its hosts open nothing.
	e.store.Remove(e.key.Source)
	if r := e.send(connectLine(host, e.tls.port())); r.status != http.StatusForbidden {
		t.Errorf("removed console: unexpected status (-want +got):\n-403\n+%d %s", r.status, r.body)
	}
}

func TestConnectDomain(t *testing.T) {
	e := newTunEnv(t, func(p *proxy.Proxy) { p.Tunnel.Domain = "Tunnel.Example" })
	host := e.sign()
	label, rest, _ := strings.Cut(host, ".")
	if rest != "tunnel.example" || len(label) != tunnel.HostLen {
		t.Fatalf("host %q is not LABEL.tunnel.example", host)
	}
	e.open(host, e.plain.port()).echo(t, "x")
	e.open(strings.ToUpper(host), e.plain.port()).echo(t, "y")
	for _, h := range []string{label, label + ".other.example", label + ".tunnel.example.evil"} {
		if r := e.send(connectLine(h, e.plain.port())); r.status != http.StatusForbidden {
			t.Errorf("%s: unexpected status (-want +got):\n-403\n+%d", h[tunnel.HostLen:], r.status)
		}
	}
}

// TestConnectEarlyData: bytes sent right after the head (before the
// 200) reach the backend first.
func TestConnectEarlyData(t *testing.T) {
	e := newTunEnv(t, nil)
	req := append(connectLine(e.sign(), e.plain.port()), "early bird\n"...)
	r := e.send(req)
	if r.status != http.StatusOK {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	got, err := r.rest.ReadString('\n')
	if err != nil || got != "early bird\n" {
		t.Fatalf("unexpected echo of early data (-want +got):\n-%q\n+%q (%v)", "early bird\n", got, err)
	}
}

// TestConnectHalfClose: the client's FIN reaches qemu's side and what
// it still sends comes back before the tunnel ends.
func TestConnectHalfClose(t *testing.T) {
	e := newTunEnv(t, nil)
	r := e.open(e.sign(), e.plain.port())
	r.conn.Write([]byte("last words\n"))
	r.conn.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(r.rest)
	if err != nil || string(rest) != "last words\n" {
		t.Fatalf("after half-close: %q, %v", rest, err)
	}
	eventually(t, 5*time.Second, "tunnel closed", func() bool { return e.proxy.Stats().Tunnels == 0 })
}

func TestConnectBackendDown(t *testing.T) {
	e := newTunEnv(t, nil)
	host := e.sign()
	e.plain.ln.Close() // the console's plain port refuses connections
	r := e.send(connectLine(host, e.plain.port()))
	if r.status != http.StatusBadGateway {
		t.Fatalf("unexpected status (-want +got):\n-502\n+%d %s", r.status, r.body)
	}
}

// TestConnectSlowloris: a client that sends its head a byte at a time
// is cut at the head deadline, however steadily it trickles.
func TestConnectSlowloris(t *testing.T) {
	const hto = 400 * time.Millisecond
	e := newTunEnv(t, func(p *proxy.Proxy) { p.Tunnel.HeadTimeout = hto })
	req := connectLine(e.sign(), e.plain.port())
	start := time.Now() // before the dial: the proxy's clock starts at accept
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.connectPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	go func() {
		for _, b := range req[:len(req)-1] {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	r := e.readResponse(c)
	close(stop)
	if r.status != http.StatusRequestTimeout {
		t.Fatalf("unexpected status (-want +got):\n-408\n+%d", r.status)
	}
	if d := time.Since(start); d < hto {
		t.Errorf("cut after %v, before the %v head deadline", d, hto)
	}
	e.barrier(e.plain, 0)
}

// TestConnectPendingCap: connections that never finish their head
// occupy at most MaxPending slots; one more is answered 503 at once,
// and a tunnel opened before the flood keeps relaying throughout.
func TestConnectPendingCap(t *testing.T) {
	const maxPending = 8
	e := newTunEnv(t, func(p *proxy.Proxy) { p.Tunnel.MaxPending = maxPending; p.Tunnel.HeadTimeout = time.Minute })
	live := e.open(e.sign(), e.plain.port())
	var silent []net.Conn
	for range maxPending {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.connectPort))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("CONNECT "))
		silent = append(silent, c)
	}
	eventually(t, 5*time.Second, "the pending slots full", func() bool { return e.metric("spice_proxy_connect_pending") == maxPending })
	if r := e.send(connectLine(e.sign(), e.plain.port())); r.status != http.StatusServiceUnavailable {
		t.Fatalf("unexpected status over the cap (-want +got):\n-503\n+%d %s", r.status, r.body)
	}
	live.echo(t, "during the flood")
	for _, c := range silent {
		c.Close()
	}
	eventually(t, 5*time.Second, "the pending slots free", func() bool { return e.metric("spice_proxy_connect_pending") == 0 })
	e.open(e.sign(), e.plain.port()).echo(t, "after the flood")
	live.echo(t, "after the flood")
}

// TestConnectEarlyEOF: a client that leaves mid-head gets no answer and
// costs nothing.
func TestConnectEarlyEOF(t *testing.T) {
	e := newTunEnv(t, nil)
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.connectPort))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("CONNECT abc:1 HTTP/1.0\r\n"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || len(got) != 0 {
		t.Fatalf("unexpected answer to a half head (-want +got):\n-\"\"\n+%q (%v)", got, err)
	}
	eventually(t, 5*time.Second, "counted as closed", func() bool {
		return e.metric("spice_proxy_connect_requests_total", "result", "closed") == 1 && e.proxy.Stats().Connecting == 0
	})
}

// TestConnectShutdown: Shutdown cuts tunnels after its deadline and
// connections still in their head at once; nothing is left.
func TestConnectShutdown(t *testing.T) {
	e := newTunEnv(t, nil)
	live := e.open(e.sign(), e.plain.port())
	head, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.connectPort))
	if err != nil {
		t.Fatal(err)
	}
	defer head.Close()
	head.Write([]byte("CONNECT "))
	eventually(t, 5*time.Second, "one connection in its head", func() bool { return e.proxy.Stats().Connecting == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.proxy.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a live tunnel: %v, want the deadline", err)
	}
	if _, err := live.rest.ReadByte(); err == nil {
		t.Errorf("the tunnel is still open after Shutdown")
	}
	if st := e.proxy.Stats(); st.Connecting != 0 || st.Tunnels != 0 || st.Listening {
		t.Errorf("after Shutdown: %+v", st)
	}
	if _, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.connectPort)); err == nil {
		t.Errorf("the CONNECT listener still accepts after Shutdown")
	}
	var closed bool
	for _, ev := range e.store.Audit() {
		closed = closed || ev.Kind == proxy.EventTunnelClosed && strings.Contains(ev.Detail, "shutdown")
	}
	if !closed {
		t.Errorf("no tunnel_closed event with reason shutdown")
	}
}

func TestConnectConfigErrors(t *testing.T) {
	st := store.New(store.Options{})
	for name, p := range map[string]*proxy.Proxy{
		"short secret": {Store: st, Tunnel: proxy.TunnelConfig{Secret: []byte("short")}},
		"bad domain":   {Store: st, Tunnel: proxy.TunnelConfig{Domain: "a b"}},
		"empty label":  {Store: st, Tunnel: proxy.TunnelConfig{Domain: "a..b"}},
		"leading dot":  {Store: st, Tunnel: proxy.TunnelConfig{Domain: ".a"}},
	} {
		if err := p.StartConnect("127.0.0.1:0"); err == nil || !strings.Contains(err.Error(), "Tunnel.") {
			t.Errorf("%s: %v, want an error naming the field", name, err)
		}
		p.Close()
	}
	// The same secret signs the same hosts on two proxies.
	k := static.Key{Source: "s", UUID: "u"}
	secret := bytes.Repeat([]byte{7}, 32)
	now := func() time.Time { return time.Unix(2_000_000_000, 0) }
	a := &proxy.Proxy{Store: st, Tunnel: proxy.TunnelConfig{Secret: secret, Now: now}}
	b := &proxy.Proxy{Store: st, Tunnel: proxy.TunnelConfig{Secret: secret, Now: now}}
	defer a.Close()
	defer b.Close()
	ha, _, _ := a.SignTunnel(k, 1, 2)
	hb, _, _ := b.SignTunnel(k, 1, 2)
	if ha != hb {
		t.Errorf("two proxies with one secret sign differently")
	}
}

// TestConnectTerminateTunnels: terminating a console cuts its tunnels,
// not another console's, and refuses the hosts signed before it; a host
// signed in the same second afterwards opens tunnels.
func TestConnectTerminateTunnels(t *testing.T) {
	e := newTunEnv(t, nil)
	other := static.Key{Source: "other", UUID: "00000000-0000-0000-0000-000000000002"}
	e.store.Load(static.Source{Name: other.Source, Type: static.TypeStatic, Consoles: []static.Console{{
		UUID: other.UUID, Name: "vm1", Hypervisor: "localhost", HypervisorIP: "127.0.0.1",
		InsecurePort: e.plain.port(), SecurePort: e.tls.port(), Ticket: "ticket-1"}}})
	otherHost, _, err := e.proxy.SignTunnel(other, e.plain.port(), e.tls.port())
	if err != nil {
		t.Fatal(err)
	}
	host := e.sign()
	live := e.open(host, e.plain.port())
	live.echo(t, "before")
	bystander := e.open(otherHost, e.plain.port())

	if n := e.proxy.TerminateTunnels(e.key); n != 1 {
		t.Errorf("TerminateTunnels cut %d tunnels, want 1", n)
	}
	live.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := live.rest.ReadString('\n'); err == nil || isTimeout(err) {
		t.Fatalf("the terminated console's tunnel is still open: %v", err)
	}
	bystander.echo(t, "another console's tunnel is untouched")

	revoked0 := e.metric("spice_proxy_connect_requests_total", "result", "revoked")
	plain0 := e.plain.accepted.Load()
	r := e.send(connectLine(host, e.plain.port()))
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "terminated") {
		t.Fatalf("unexpected answer to a host signed before the terminate (-want +got):\n-403 …terminated…\n+%d %s", r.status, r.body)
	}
	if got := e.metric("spice_proxy_connect_requests_total", "result", "revoked") - revoked0; got != 1 {
		t.Errorf("unexpected revoked count (-want +got):\n-1\n+%v", got)
	}
	e.barrier(e.plain, plain0) // signs a fresh host in the terminate's second: it must open
	e.open(otherHost, e.tls.port()).conn.Close()
	e.noHostLeaked(host, otherHost)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
