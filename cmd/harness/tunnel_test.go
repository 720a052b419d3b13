package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy/tunnel"
	"github.com/spiceharness/spiceharness/proxy/vv"
)

// fetchFile GETs a .vv.
func fetchFile(t *testing.T, url string) ([]byte, *vv.File) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	f, err := vv.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	return body, f
}

// metricValue reads one counter from the lane's /metrics.
func metricValue(t *testing.T, apiURL, series string) float64 {
	t.Helper()
	resp, err := http.Get(apiURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && name == series {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// hostileFlood throws hostile CONNECT requests at addr: a huge head,
// garbage, slowloris clients, and more connections at once than the
// pending cap. It returns the connections it keeps open (close them).
func hostileFlood(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var mu sync.Mutex
	var held []net.Conn
	var wg sync.WaitGroup
	one := func(f func(c net.Conn)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return // the listener's backlog may overflow: that is the point
			}
			f(c)
		}()
	}
	for range 4 {
		one(func(c net.Conn) { // huge head
			fmt.Fprintf(c, "CONNECT a:1 HTTP/1.0\r\nX: %s\r\n\r\n", strings.Repeat("y", 1<<20))
			io.Copy(io.Discard, c)
			c.Close()
		})
		one(func(c net.Conn) { // garbage
			c.Write([]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\r\n\r\n"))
			io.Copy(io.Discard, c)
			c.Close()
		})
	}
	// These are answered (431, 400) before the slowloris wave fills the
	// pending cap: after it they would get 503 like the wave's tail.
	wg.Wait()
	for range n {
		one(func(c net.Conn) { // slowloris: a head that never ends
			c.Write([]byte("CONNECT "))
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		})
	}
	wg.Wait()
	return held
}

// TestIntegrationUpTunnel: `up --connect-listen` serves tunnel .vv files;
// remote-viewer opens one (proxy=, signed host, qemu's TLS port checked
// against qemu's CA and subject) and shows exactly the guest's pixels;
// a flood of hostile CONNECT requests leaves that session working, and
// new tunnels open again once the flood is gone.
func TestIntegrationUpTunnel(t *testing.T) {
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	testenv.NeedCommand(t, "spicy-screenshot", "spice-client-gtk")
	for _, p := range []string{"remote-viewer:virt-viewer", "Xvfb:xvfb", "xdotool:xdotool", "import:imagemagick"} {
		prog, pkg, _ := strings.Cut(p, ":")
		testenv.NeedCommand(t, prog, pkg)
	}
	h := startHarness(t, "up", "--json", "--tls-backends", "--connect-listen", "127.0.0.1:0")
	r := h.ready
	if r.Proxy.ConnectPort == 0 || len(r.Consoles) != 1 || r.Consoles[0].TunnelVVURL == "" {
		t.Fatalf("ready line without the CONNECT listener: %+v", r)
	}
	c := r.Consoles[0]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The reference: spicy-screenshot through the terminating proxy (a
	// single-use token on its argv), which equals a direct capture.
	_, pf := fetchFile(t, c.VVURL)
	ep := harness.EndpointOf(pf)
	ep.Port = 0
	ref, err := harness.Screenshot(ctx, ep, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}

	raw, f := fetchFile(t, c.TunnelVVURL)
	proxyURL := f.Proxy
	if want := fmt.Sprintf("http://127.0.0.1:%d", r.Proxy.ConnectPort); proxyURL != want {
		t.Fatalf("unexpected proxy= (-want +got):\n-%s\n+%s", want, proxyURL)
	}
	label, _, _ := strings.Cut(f.Host, ".") // LABEL.tunnel.spice-harness.test
	if _, err := tunnel.Decode(label); err != nil || f.Port != 0 || f.TLSPort == 0 || f.CA == "" || f.HostSubject == "" {
		t.Fatalf("tunnel .vv does not describe qemu's TLS port (only), CA and subject behind a signed host: %v (%v)", f, err)
	}
	rv, err := harness.StartRemoteViewer(ctx, raw, f.Title, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rv.Close()
	if err := rv.WaitOpened(ctx); err != nil {
		t.Fatalf("%v\nharness stderr:\n%s", err, h.stderr.String())
	}
	img, err := rv.Capture(ctx, ref.W, ref.H)
	if err != nil {
		t.Fatal(err)
	}
	if n := img.DiffPixels(ref); n != 0 {
		t.Fatalf("remote-viewer through the tunnel: %d pixels differ from the reference", n)
	}
	if !strings.Contains(rv.Log(), "main channel: opened") {
		t.Fatalf("remote-viewer log has no main channel")
	}
	opened := metricValue(t, r.API, `spice_proxy_connect_requests_total{result="ok"}`)
	if opened < 2 {
		t.Fatalf("%v tunnels opened for remote-viewer, want at least main and display", opened)
	}

	// The flood, beside the live session.
	addr := fmt.Sprintf("127.0.0.1:%d", r.Proxy.ConnectPort)
	held := hostileFlood(t, addr, 300)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for result, want := range map[string]float64{"too_large": 4, "bad_request": 4, "busy": 1} {
		if got := metricValue(t, r.API, `spice_proxy_connect_requests_total{result="`+result+`"}`); got < want {
			t.Errorf("%s refusals: %v, want at least %v", result, got, want)
		}
	}
	// The live session still carries keys and pixels: the typed text
	// shows in remote-viewer.
	if err := rv.Type(ctx, "tunnel"); err != nil {
		t.Fatal(err)
	}
	after, err := rv.Capture(ctx, ref.W, ref.H)
	if err != nil {
		t.Fatal(err)
	}
	if after.DiffPixels(ref) == 0 {
		t.Fatalf("typing through the tunnel during the flood changed nothing on screen")
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	// New tunnels open again: a fresh .vv's host is accepted.
	_, f2 := fetchFile(t, c.TunnelVVURL)
	var ok bool
	for end := time.Now().Add(10 * time.Second); !ok && time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		ok = connectOK(t, addr, f2.Host, f2.TLSPort)
	}
	if !ok {
		t.Fatalf("no new tunnel after the flood")
	}
	// The reference after typing, through the terminating proxy, equals
	// what remote-viewer shows (this capture ends remote-viewer's
	// session: qemu serves one client at a time).
	_, pf = fetchFile(t, c.VVURL)
	ep = harness.EndpointOf(pf)
	ep.Port = 0
	ref2, err := harness.Screenshot(ctx, ep, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if n := after.DiffPixels(ref2); n != 0 {
		t.Errorf("remote-viewer after typing: %d pixels differ from a capture of the same screen", n)
	}
	for _, s := range []string{f.Host, f.Password} {
		if strings.Contains(h.stderr.String(), s) || len(testenv.ArgvHolding(s)) > 0 {
			t.Errorf("a signed host or ticket is in the progress log or on a command line")
		}
	}
	rv.Close()
	if code := h.stop(t); code != 0 {
		t.Fatalf("up exited %d after SIGINT\nstderr:\n%s", code, h.stderr.String())
	}
	if _, err := os.Stat(r.SourcesYAML); !os.IsNotExist(err) {
		t.Errorf("state dir left behind: %v", err)
	}
}

// connectOK sends spice-gtk's CONNECT for host:port and reports a 200.
func connectOK(t *testing.T, addr, host string, port int) bool {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:%d HTTP/1.0\r\nHost: %s:%d\r\nProxy-Connection: keep-alive\r\nUser-Agent: GLib/2.74\r\n\r\n", host, port, host, port)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	return err == nil && resp.StatusCode == http.StatusOK
}
