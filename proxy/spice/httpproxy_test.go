package spice_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
)

// fakeConnect is an HTTP CONNECT proxy for unit tests: it records each
// request head, answers with answer (a whole head) and, on a 200,
// relays to backend whatever host was asked for.
type fakeConnect struct {
	ln      net.Listener
	backend string
	answer  string
	mu      sync.Mutex
	heads   []string
	wg      sync.WaitGroup
}

func startFakeConnect(t *testing.T, backend, answer string) *fakeConnect {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeConnect{ln: ln, backend: backend, answer: answer}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); f.serve(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	return f
}

func (f *fakeConnect) URL() string { return "http://" + f.ln.Addr().String() }

func (f *fakeConnect) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	var head strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	f.mu.Lock()
	f.heads = append(f.heads, head.String())
	f.mu.Unlock()
	if _, err := io.WriteString(c, f.answer); err != nil || !strings.Contains(f.answer, " 200 ") {
		return
	}
	b, err := net.Dial("tcp", f.backend)
	if err != nil {
		return
	}
	defer b.Close()
	done := make(chan struct{})
	go func() { io.Copy(b, r); b.(*net.TCPConn).CloseWrite(); close(done) }()
	io.Copy(c, b)
	c.Close()
	<-done
}

func (f *fakeConnect) Heads() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.heads...)
}

// TestDialerThroughProxy: with Proxy set every channel is a CONNECT of
// its own, in spice-gtk's exact form, with the host passed through
// unchanged (an opaque name the proxy resolves), and TLS runs end to
// end with the server, checked against the CA and host-subject.
func TestDialerThroughProxy(t *testing.T) {
	const subject = "O=spicetest,CN=localhost"
	ca, cfg := tlsPair(t, subject)
	srv := startServer(t, &spicetest.Server{TLS: cfg})
	fp := startFakeConnect(t, srv.Addr().String(), "HTTP/1.0 200 Connection established\r\nProxy-Agent: fake\r\n\r\n")
	ctx := ctxT(t)
	const host = "opaque-signed-host.example"
	d := &spice.Dialer{Host: host, TLSPort: srv.Port(), Password: "hunter2", CA: ca.Pool(), HostSubject: subject, Proxy: fp.URL()}
	s, err := d.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Main.Secure {
		t.Error("main is not on TLS")
	}
	if _, err := s.Open(ctx, spice.ChannelInputs, 0); err != nil {
		t.Fatalf("a second channel through the proxy: %v", err)
	}
	target := host + ":" + strconv.Itoa(srv.Port())
	want := "CONNECT " + target + " HTTP/1.0\r\nHost: " + target + "\r\nProxy-Connection: keep-alive\r\nUser-Agent: GLib/2.74\r\n\r\n"
	if d := cmp.Diff([]string{want, want}, fp.Heads()); d != "" {
		t.Errorf("unexpected CONNECT requests (-want +got):\n%s", d)
	}
}

// TestDialerProxyRefusals: a refusal is a StepProxy LinkError carrying
// the *ProxyError with the status; an answer that is not HTTP has
// status 0; user:password in the URL becomes Basic Proxy-Authorization.
func TestDialerProxyRefusals(t *testing.T) {
	srv := startServer(t, &spicetest.Server{})
	ctx := ctxT(t)
	for _, tc := range []struct {
		name, answer string
		status       int
	}{
		{"forbidden", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 403},
		{"bad request, bare LF", "HTTP/1.0 400 Bad Request\n\n", 400},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp := startFakeConnect(t, srv.Addr().String(), tc.answer)
			_, err := (&spice.Dialer{Host: "h", Port: srv.Port(), Password: "hunter2", Proxy: fp.URL()}).Connect(ctx)
			var le *spice.LinkError
			var pe *spice.ProxyError
			if !errors.As(err, &le) || le.Step != spice.StepProxy || !errors.As(err, &pe) || pe.Status != tc.status {
				t.Fatalf("want a %q step failure with status %d, got %v", spice.StepProxy, tc.status, err)
			}
		})
	}
	fp := startFakeConnect(t, srv.Addr().String(), "HTTP/1.0 407 Proxy Authentication Required\r\n\r\n")
	u := strings.Replace(fp.URL(), "http://", "http://user:pa%3Ass@", 1)
	_, err := (&spice.Dialer{Host: "h", Port: 5900, Password: "hunter2", Proxy: u}).Connect(ctx)
	if err == nil || strings.Contains(err.Error(), "pa:ss") {
		t.Fatalf("want a refusal that does not quote the password, got %v", err)
	}
	if h := fp.Heads(); len(h) != 1 || !strings.Contains(h[0], "\r\nProxy-Authorization: Basic dXNlcjpwYTpzcw==\r\n") {
		t.Errorf("no Basic Proxy-Authorization for user:pa:ss in %q", h)
	}
}

func TestParseProxyURL(t *testing.T) {
	for _, tc := range []struct{ in, addr string }{
		{"http://127.0.0.1:3128", "127.0.0.1:3128"},
		{"http://proxy.example", "proxy.example:3128"},
		{"http://[::1]:8080/", "[::1]:8080"},
	} {
		addr, auth, err := spice.ParseProxyURL(tc.in)
		if err != nil || addr != tc.addr || auth != "" {
			t.Errorf("ParseProxyURL(%q) = %q, %q, %v; want %q", tc.in, addr, auth, err, tc.addr)
		}
	}
	for _, in := range []string{"", "127.0.0.1:3128", "https://p:1", "socks5://p:1", "http://p:0", "http://p:1/x", "http://:1"} {
		if _, _, err := spice.ParseProxyURL(in); !errors.Is(err, spice.ErrProxyURL) {
			t.Errorf("ParseProxyURL(%q): %v, want ErrProxyURL", in, err)
		}
	}
	if _, _, err := spice.ParseProxyURL("https://u:secret@p:1"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("the error quotes the password: %v", err)
	}
}
