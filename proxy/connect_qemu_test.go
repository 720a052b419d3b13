package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/internal/pki"
	"github.com/spiceharness/spiceharness/internal/syncbuf"
	"github.com/spiceharness/spiceharness/internal/testenv"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/qemu"
	"github.com/spiceharness/spiceharness/static"
)

// The real-client proofs of the CONNECT listener: real qemu with plain
// and TLS SPICE ports, spicy-screenshot (spice-gtk) reaching it through
// the tunnel with SPICE_PROXY and a signed host.

// tunnelDomain is the proxy's Tunnel.Domain in these tests. qemu's
// certificate gets a *.tunnelDomain name, because spicy-screenshot has
// no host-subject option: it checks the certificate against the host it
// was given, which through the tunnel is the signed host.
const tunnelDomain = "tunnel.spice-harness.test"

// qemuTunnel is one qemu behind a CONNECT listener.
type qemuTunnel struct {
	vm    qemu.VM
	ca    *pki.CA
	con   static.Console // ports, host subject (the ticket changes)
	key   static.Key
	store *store.Store
	proxy *proxy.Proxy
	log   syncbuf.Buffer
	home  string       // spicy-screenshot's HOME, kept: a fresh one costs ~140 ms
	clock atomic.Int64 // offset of the proxy's tunnel clock, ns
	// hostExpires is when the last host sign made expires.
	hostExpires time.Time
}

func startQemuTunnel(t testing.TB, ctx context.Context) *qemuTunnel {
	t.Helper()
	testenv.Short(t)
	testenv.NeedCommand(t, "qemu-system-x86_64", "qemu-system-x86")
	testenv.NeedCommand(t, "spicy-screenshot", "spice-client-gtk")
	q := &qemuTunnel{home: t.TempDir()}
	var err error
	if q.ca, err = pki.NewCA("tunnel test CA"); err != nil {
		t.Fatal(err)
	}
	// qemu's certificate also names *.tunnelDomain (qemu.TLSNames), so
	// that spicy-screenshot's host name check passes for a signed host.
	q.vm, err = qemu.Start(ctx, qemu.Accel(qemu.AccelTCG), qemu.TLS(q.ca), qemu.TLSNames("*."+tunnelDomain))
	t.Cleanup(func() {
		if err := q.vm.Close(); err != nil {
			t.Errorf("qemu Close: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.vm.SetTicket(ctx); err != nil {
		t.Fatal(err)
	}
	if err := q.vm.WaitFor(ctx, qemu.ForSPICE(), qemu.ForGuestPrompt()); err != nil {
		t.Fatal(err)
	}
	ep := q.vm.Endpoint()
	q.con = static.Console{UUID: ep.UUID, Name: ep.Name, Hypervisor: ep.Host, HypervisorIP: ep.HostIP,
		InsecurePort: ep.Port, SecurePort: ep.TLSPort, HostSubject: ep.HostSubject, Ticket: ep.Ticket}
	q.key = static.Key{Source: "qemu", UUID: q.con.UUID}
	q.store = store.New(store.Options{})
	q.store.Load(static.Source{Name: "qemu", Type: static.TypeStatic, CACert: string(q.ca.CertPEM), Consoles: []static.Console{q.con}})
	q.proxy = &proxy.Proxy{Store: q.store, KeyPoolSize: 1, Logger: slog.New(slog.NewTextHandler(&q.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Tunnel: proxy.TunnelConfig{Domain: tunnelDomain, Now: func() time.Time { return time.Now().Add(time.Duration(q.clock.Load())) }}}
	if err := q.proxy.StartConnect("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.proxy.Close() })
	if err := os.WriteFile(filepath.Join(q.home, "ca.pem"), q.ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return q
}

func (q *qemuTunnel) proxyURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", q.proxy.ConnectAddr().Port)
}

func (q *qemuTunnel) sign(t testing.TB) string {
	t.Helper()
	host, exp, err := q.proxy.SignTunnel(q.key, q.con.InsecurePort, q.con.SecurePort)
	if err != nil {
		t.Fatal(err)
	}
	q.hostExpires = exp
	return host
}

// shot is one spicy-screenshot run.
type shot struct {
	host     string
	port     int  // the port given to spicy-screenshot
	secure   bool // port is the TLS port (-s)
	proxyURL string
}

// capture runs spicy-screenshot once with a fresh qemu ticket, replaced
// as soon as it is done (the ticket is on its argv: it has no other
// way), and returns the PPM it wrote.
func (q *qemuTunnel) capture(ctx context.Context, s shot) ([]byte, error) {
	img, _, err := q.timedCapture(ctx, s)
	return img, err
}

// timedCapture is capture, also returning how long the spicy-screenshot
// process ran (the ticket changes are outside that time).
func (q *qemuTunnel) timedCapture(ctx context.Context, s shot) ([]byte, time.Duration, error) {
	ticket, err := q.vm.SetTicket(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer q.vm.SetTicket(ctx)
	out := filepath.Join(q.home, "shot.ppm")
	os.Remove(out)
	flag := "-p"
	if s.secure {
		flag = "-s"
	}
	cmd := exec.CommandContext(ctx, "spicy-screenshot", "-h", s.host, flag, strconv.Itoa(s.port), "-w", ticket, "-o", out)
	cmd.Env = append(os.Environ(), "HOME="+q.home, "XDG_CONFIG_HOME="+q.home, "SSL_CERT_FILE="+filepath.Join(q.home, "ca.pem"))
	if s.proxyURL != "" {
		cmd.Env = append(cmd.Env, "SPICE_PROXY="+s.proxyURL)
	}
	start := time.Now()
	b, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		return nil, took, fmt.Errorf("spicy-screenshot %s port %d via %q: %v\n%s", map[bool]string{false: "plain", true: "TLS"}[s.secure], s.port, s.proxyURL, err, b)
	}
	img, err := os.ReadFile(out)
	return img, took, err
}

// TestIntegrationTunnelScreenshot: spicy-screenshot through the CONNECT
// listener, with SPICE_PROXY and the signed host, captures exactly the
// pixels it captures straight from qemu, on the plain and the TLS port.
func TestIntegrationTunnelScreenshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q := startQemuTunnel(t, ctx)
	direct, err := q.capture(ctx, shot{host: "127.0.0.1", port: q.con.InsecurePort})
	if err != nil {
		t.Fatal(err)
	}
	host := q.sign(t)
	for _, s := range []shot{
		{host: host, port: q.con.InsecurePort, proxyURL: q.proxyURL()},
		{host: host, port: q.con.SecurePort, secure: true, proxyURL: q.proxyURL()},
	} {
		img, err := q.capture(ctx, s)
		if err != nil {
			t.Fatalf("through the tunnel: %v\nproxy log:\n%s", err, q.log.String())
		}
		if !bytes.Equal(img, direct) {
			t.Errorf("port %d through the tunnel: the picture differs from the direct capture", s.port)
		}
	}
	if got, _ := q.proxy.Metric("spice_proxy_connect_requests_total", "result", "ok"); got < 4 {
		t.Errorf("%v tunnels opened, want at least 4 (main and display, twice)", got)
	}
}

// qemuBarrier proves that no connection reached qemu since sub was made:
// it connects to qemu's plain port itself and requires the first
// SPICE_CONNECTED event to be its own (QMP delivers events in order, so
// an earlier connection would have been reported first).
func qemuBarrier(ctx context.Context, t *testing.T, q *qemuTunnel, sub *qemu.Subscription) {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort(q.con.HypervisorIP, strconv.Itoa(q.con.InsecurePort)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mine := strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ev, err := sub.Next(wctx, qemu.EventSPICEConnected)
	if err != nil {
		t.Fatalf("waiting for the barrier's SPICE_CONNECTED: %v", err)
	}
	client, _ := ev.Data["client"].(map[string]any)
	if got := fmt.Sprint(client["port"]); got != mine || sub.Dropped() != 0 {
		t.Fatalf("qemu reported a connection from port %s before the barrier's (%s): something reached qemu", got, mine)
	}
}

// TestIntegrationTunnelRefusals: spicy-screenshot with a tampered host,
// an expired host, or a valid host and a port that is not a console's
// gets a 403 from the proxy (it fails; the proxy counted why), and
// nothing was dialed: qemu's next SPICE_CONNECTED is the barrier's own,
// and a listener on the foreign port accepted nothing before its own
// barrier.
func TestIntegrationTunnelRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q := startQemuTunnel(t, ctx)
	decoy := newEchoBackend(t) // a port on the same host that is no console's
	host := q.sign(t)
	label, domain, _ := strings.Cut(host, ".")
	tampered := label[:10] + map[bool]string{true: "b", false: "a"}[label[10] == 'a'] + label[11:] + "." + domain
	cases := []struct {
		name    string
		host    string
		port    int
		advance time.Duration
		result  string
	}{
		{"tampered host", tampered, q.con.InsecurePort, 0, "unknown_host"},
		{"qemu's address", "127.0.0.1", q.con.InsecurePort, 0, "unknown_host"},
		{"expired host", host, q.con.SecurePort, proxy.DefaultTunnelHostTTL + time.Second, "expired"},
		{"port not a console's", q.sign(t), decoy.port(), 0, "bad_port"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sub := q.vm.Subscribe()
			defer sub.Close()
			q.clock.Store(int64(tc.advance))
			defer q.clock.Store(0)
			before, _ := q.proxy.Metric("spice_proxy_connect_requests_total", "result", tc.result)
			decoy0 := decoy.accepted.Load()
			_, err := q.capture(ctx, shot{host: tc.host, port: tc.port, secure: tc.port == q.con.SecurePort, proxyURL: q.proxyURL()})
			if err == nil {
				t.Fatalf("spicy-screenshot got a picture through a refused tunnel")
			}
			if got, _ := q.proxy.Metric("spice_proxy_connect_requests_total", "result", tc.result); got-before < 1 {
				t.Fatalf("the proxy did not refuse spicy-screenshot's CONNECT as %s: %v\nproxy log:\n%s", tc.result, err, q.log.String())
			}
			qemuBarrier(ctx, t, q, sub)
			q.clock.Store(0)
			acceptBarrier(t, decoy, decoy0)
		})
	}
	// A valid host still works after all that.
	if _, err := q.capture(ctx, shot{host: q.sign(t), port: q.con.SecurePort, secure: true, proxyURL: q.proxyURL()}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(q.log.String(), label) {
		t.Errorf("the proxy log holds a signed host")
	}
}

// acceptBarrier proves that nothing connected to b since it had accepted
// before connections: it connects itself and requires b's next accepted
// connection to be its own.
func acceptBarrier(t *testing.T, b *echoBackend, before int64) {
	t.Helper()
	c, err := net.Dial("tcp", b.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	marker := fmt.Sprintf("accept barrier %d", before)
	fmt.Fprintf(c, "%s\n", marker)
	for {
		select {
		case sl := <-b.lines:
			if sl.line != marker {
				continue
			}
			if sl.seq != before+1 {
				t.Fatalf("%d connection(s) reached %s before the barrier's", sl.seq-before-1, b.ln.Addr())
			}
			return
		case <-time.After(10 * time.Second):
			t.Fatal("the barrier's marker never arrived")
		}
	}
}
