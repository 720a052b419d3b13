package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/spiceharness/spiceharness/proxy"
	"github.com/spiceharness/spiceharness/proxy/api"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/spice/spicetest"
	"github.com/spiceharness/spiceharness/proxy/store"
	"github.com/spiceharness/spiceharness/proxy/vv"
	"github.com/spiceharness/spiceharness/static"
	"go.uber.org/goleak"
)

// Faults (issue 8, item 3) against synthetic backends: what clients see
// and what the proxy leaves behind when qemu dies, refuses, goes silent,
// when the API restarts and when the proxy shuts down under load. The
// same faults against real qemu are scenarios/fault_*.go.

// fullSession links main, display (drawn), inputs and cursor.
func fullSession(ctx context.Context, t *testing.T, e *env, console int) (store.Minted, *spice.Session, []*spice.Channel) {
	t.Helper()
	m := e.mint(console)
	s, err := e.dialer(m.Token).Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chans := []*spice.Channel{s.Main}
	for _, typ := range []spice.ChannelType{spice.ChannelDisplay, spice.ChannelInputs, spice.ChannelCursor} {
		c, err := s.Open(ctx, typ, 0)
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, c)
	}
	chans[1].InitDisplay()
	if _, _, err := chans[1].WaitFirstDraw(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := chans[3].WaitFor(ctx, spice.MsgCursorInit); err != nil {
		t.Fatal(err)
	}
	return m, s, chans
}

// proxyIdle waits until the proxy holds no channel and no handshake and
// its gauges agree.
func proxyIdle(t *testing.T, e *env, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	eventually(t, within, "the proxy to hold no channel", func() bool {
		st := e.proxy.Stats()
		return st.Channels == 0 && st.Handshaking == 0 &&
			metricSum(t, e, "spice_proxy_channels_active") == 0 &&
			metricSum(t, e, "spice_proxy_connections_active") == 0
	})
	return time.Since(start)
}

// linkOutcome is where a client's link failed and with which code.
type linkOutcome struct {
	Step string
	Code spice.LinkErr
}

func wantLinkResult(t *testing.T, err error, code spice.LinkErr) {
	t.Helper()
	var got linkOutcome
	if le := (*spice.LinkError)(nil); errors.As(err, &le) {
		got = linkOutcome{le.Step, le.Code}
	}
	if diff := cmp.Diff(linkOutcome{spice.StepLinkResult, code}, got); diff != "" {
		t.Fatalf("unexpected link outcome (-want +got):\n%s\n(error: %v)", diff, err)
	}
}

// auditDetail returns the details of the session's events of kind.
func auditDetail(e *env, session string, kind store.EventKind) []string {
	var out []string
	for _, ev := range e.store.Audit() {
		if ev.Session == session && ev.Kind == kind {
			out = append(out, ev.Detail)
		}
	}
	return out
}

// wantFailedAt wants one backend_failed audit event for the session, at
// the given link step. The event's detail is the *spice.LinkError's text
// ("spice: link main:0: STEP: …"): the audit log keeps text, not errors.
func wantFailedAt(t *testing.T, e *env, session, step string) {
	t.Helper()
	var steps []string
	for _, d := range auditDetail(e, session, store.EventBackendFailed) {
		_, after, _ := strings.Cut(d, "spice: link main:0: ")
		s, _, _ := strings.Cut(after, ":")
		steps = append(steps, s)
	}
	if diff := cmp.Diff([]string{step}, steps); diff != "" {
		t.Errorf("unexpected steps of backend_failed events (-want +got):\n%s", diff)
	}
}

func TestFaultBackendKilledMidSession(t *testing.T) {
	for _, closeOnEOF := range []bool{true, false} {
		name := "client closes on EOF"
		if !closeOnEOF {
			name = "client keeps its sockets"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			ctx := ctxT(t)
			m, s, chans := fullSession(ctx, t, e, 0)
			defer s.Close()
			if closeOnEOF {
				// spice-gtk closes a channel when it reads EOF.
				for _, c := range chans {
					go func() { <-c.Done(); c.Close() }()
				}
			}
			start := time.Now()
			e.server(0).Close() // qemu SIGKILLed: every socket and the port closed
			var slowest time.Duration
			for _, c := range chans {
				select {
				case <-c.Done():
				case <-time.After(2 * time.Second):
					t.Fatalf("%s still open 2 s after the backend died", c.ID)
				}
				slowest = max(slowest, time.Since(start))
				if diff := cmp.Diff(io.EOF, c.Err(), cmpopts.EquateErrors()); diff != "" {
					t.Errorf("%s: unexpected end (-want +got):\n%s", c.ID, diff)
				}
			}
			proxyIdle(t, e, proxy.DefaultHalfCloseTimeout+2*time.Second)
			cleaned := time.Since(start)
			info, err := e.store.Session(m.SessionID)
			if err != nil {
				t.Fatal(err)
			}
			type after struct {
				State         string
				Channels      []string
				ChannelClosed int
				SessionsEnded float64
				HandshakesOK  float64
			}
			want := after{State: "ended", Channels: []string{}, ChannelClosed: 4, SessionsEnded: 1, HandshakesOK: 4}
			got := after{info.State, info.Channels, len(auditDetail(e, m.SessionID, store.EventChannelClosed)),
				metric(t, e, "spice_proxy_sessions_ended_total"), metric(t, e, "spice_proxy_handshakes_total", "result", "ok")}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("unexpected state after the backend died (-want +got):\n%s", diff)
			}
			t.Logf("backend killed: all 4 client channels saw a clean EOF within %v; the proxy held nothing after %v",
				slowest.Round(time.Millisecond), cleaned.Round(time.Millisecond))

			// A new session gets an error link result at once, not a hang.
			start = time.Now()
			_, err = e.dialer(e.mint(0).Token).Connect(ctx)
			wantLinkResult(t, err, spice.ErrLinkGeneric)
			t.Logf("new link to the dead backend refused in %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

func TestFaultBackendRefusesTicket(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	// qemu's ticket changed behind the store's back.
	e.server(0).Password = "rotated-behind-the-store"
	m := e.mint(0)
	_, err := e.dialer(m.Token).Connect(ctx)
	wantLinkResult(t, err, spice.ErrPermissionDenied)
	proxyIdle(t, e, 2*time.Second)
	if diff := cmp.Diff(1.0, metric(t, e, "spice_proxy_backend_links_total", "result", "PERMISSION_DENIED")); diff != "" {
		t.Errorf("unexpected backend_links_total{PERMISSION_DENIED} (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(1, len(auditDetail(e, m.SessionID, store.EventBackendFailed))); diff != "" {
		t.Errorf("unexpected backend_failed events (-want +got):\n%s", diff)
	}
	// The refusal did not burn the token: once the store has the right
	// ticket, the same token opens its session.
	if err := e.store.SetTicket(static.Key{Source: "lab", UUID: e.uuid(0)}, "rotated-behind-the-store"); err != nil {
		t.Fatal(err)
	}
	s, err := e.dialer(m.Token).Connect(ctx)
	if err != nil {
		t.Fatalf("the token after the store was fixed: %v", err)
	}
	s.Close()
}

func TestFaultBackendPortClosed(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	e.server(0).Close()
	m := e.mint(0)
	start := time.Now()
	_, err := e.dialer(m.Token).Connect(ctx)
	wantLinkResult(t, err, spice.ErrLinkGeneric)
	if d := time.Since(start); d > proxy.DefaultBackendTimeout/2 {
		t.Errorf("a refused backend took %v to report (it should not wait for the %v backend deadline)", d, proxy.DefaultBackendTimeout)
	}
	wantFailedAt(t, e, m.SessionID, spice.StepDial)
	if info, _ := e.store.Session(m.SessionID); info.State != "minted" {
		t.Errorf("unexpected session state after a backend failure, the token must not be burnt (-want +got):\n%s", cmp.Diff("minted", info.State))
	}
	proxyIdle(t, e, 2*time.Second)
}

// silentListener accepts TCP and never sends a byte.
func silentListener(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// unacceptingPort is a port whose listener has a full accept queue:
// connects to it hang in SYN_SENT (a host that is down or firewalled).
func unacceptingPort(t *testing.T) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return port // the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("the accept queue never filled")
	return 0
}

// addConsole loads a one-console source "fault" and returns its key.
func addConsole(e *env, c static.Console) static.Key {
	c.UUID, c.Name, c.Hypervisor, c.HypervisorIP, c.Ticket = "99999999-0000-0000-0000-000000000000", "fault", "localhost", "127.0.0.1", "ticket"
	e.store.Load(static.Source{Name: "fault", Type: static.TypeStatic, Consoles: []static.Console{c}})
	return static.Key{Source: "fault", UUID: c.UUID}
}

func TestFaultSilentBackend(t *testing.T) {
	const bto = 500 * time.Millisecond
	for _, tc := range []struct {
		name    string
		console func(t *testing.T) static.Console
		step    string
	}{
		{"accepts TCP and never answers the link", func(t *testing.T) static.Console {
			return static.Console{InsecurePort: silentListener(t)}
		}, spice.StepLinkReply},
		{"TLS port that never answers the handshake", func(t *testing.T) static.Console {
			return static.Console{InsecurePort: 1, SecurePort: silentListener(t)}
		}, spice.StepTLS},
		{"never accepts TCP (full backlog)", func(t *testing.T) static.Console {
			return static.Console{InsecurePort: unacceptingPort(t)}
		}, spice.StepDial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(p *proxy.Proxy) { p.BackendTimeout = bto })
			ctx := ctxT(t)
			k := addConsole(e, tc.console(t))
			m, err := e.store.Mint(k)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = e.dialer(m.Token).Connect(ctx)
			took := time.Since(start)
			wantLinkResult(t, err, spice.ErrLinkGeneric)
			if took < bto || took > bto+2*time.Second {
				t.Errorf("the client got its error after %v; want the %v backend deadline (+2 s slack)", took, bto)
			}
			wantFailedAt(t, e, m.SessionID, tc.step)
			proxyIdle(t, e, 2*time.Second)
			t.Logf("%s: error link result after %v (backend deadline %v)", tc.name, took.Round(time.Millisecond), bto)
		})
	}
}

// linkReplyTime links main on a raw TLS connection and returns how long
// the proxy took to send its link reply (then closes, before any ticket).
func linkReplyTime(t *testing.T, e *env) time.Duration {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.proxy.CAPEM())
	c, err := tls.Dial("tcp", e.proxy.TLSAddr().String(), spice.TLSConfig(pool, "127.0.0.1", e.proxy.HostSubject()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	c.Write(goodLink())
	if _, err := spice.ReadLinkReply(c, spice.DefaultMaxLinkSize); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func TestFaultDeadConsoleDoesNotDelayOthers(t *testing.T) {
	// A failed probe is retried on the next link (retry 1 ns), and each
	// re-probe hangs 1 s on a console that never accepts TCP.
	e := newEnv(t, func(p *proxy.Proxy) { proxy.SetProbeTiming(p, time.Nanosecond, time.Second) })
	proxy.WaitProbes(e.proxy) // the healthy console's warm-up probes
	// The reference: link replies with only healthy consoles, this run.
	ref := time.Hour
	for range 3 {
		ref = min(ref, linkReplyTime(t, e))
	}
	addConsole(e, static.Console{InsecurePort: unacceptingPort(t)})
	first := linkReplyTime(t, e) // waits (up to ProbeWait) for the dead console's first probe
	proxy.WaitProbes(e.proxy)    // that probe has failed: from now on each link re-probes it
	// Every link below finds a re-probe of the dead console in flight. A
	// proxy that waited for it would add ProbeWait to every one of them,
	// so the fastest tells, whatever the load does to the others.
	fastest, slowest := time.Hour, time.Duration(0)
	for range 6 {
		d := linkReplyTime(t, e)
		fastest, slowest = min(fastest, d), max(slowest, d)
	}
	if bound := ref + proxy.ProbeWait/2; fastest >= bound {
		t.Errorf("the fastest of 6 link replies took %v while a dead console was re-probed (healthy reference %v, bound %v): it waited for the probe (%v)",
			fastest, ref, bound, proxy.ProbeWait)
	}
	t.Logf("link reply: %v with healthy consoles only; %v for the dead console's first probe; then %v–%v during its re-probes",
		ref.Round(time.Millisecond), first.Round(time.Millisecond), fastest.Round(time.Millisecond), slowest.Round(time.Millisecond))
}

func TestFaultShutdownCutsBackendLinks(t *testing.T) {
	// The backend deadline is the default 10 s; Shutdown must not wait
	// for it when the client is gone. Probes of the silent backend give
	// up after 50 ms and are not retried, so that the only connection it
	// then gets is the handshake's backend link.
	e := newEnv(t, func(p *proxy.Proxy) { proxy.SetProbeTiming(p, time.Hour, 50*time.Millisecond) }, &spicetest.Server{Silent: true})
	ctx := ctxT(t)
	proxy.WaitProbes(e.proxy)
	eventually(t, 5*time.Second, "the probes' connections closed", func() bool { return e.server(0).Conns() == 0 })
	linked := make(chan error, 1)
	go func() {
		_, err := e.dialer(e.mint(0).Token).Connect(ctx)
		linked <- err
	}()
	eventually(t, 5*time.Second, "the backend link under way", func() bool { return e.server(0).Conns() == 1 })
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	e.proxy.Shutdown(sctx)
	took := time.Since(start)
	if took > proxy.DefaultBackendTimeout/2 {
		t.Errorf("Shutdown took %v with a backend link in progress: it waited for the %v backend deadline", took, proxy.DefaultBackendTimeout)
	}
	if err := <-linked; err == nil {
		t.Error("the client linked through a proxy that shut down")
	}
	if !e.server(0).WaitIdle(2 * time.Second) {
		t.Errorf("the backend still has %d connections from the proxy after Shutdown", e.server(0).Conns())
	}
	t.Logf("Shutdown with a backend link in progress returned in %v", took.Round(time.Millisecond))
}

func TestFaultAPIRestart(t *testing.T) {
	e := newEnv(t, nil)
	ctx := ctxT(t)
	start := func(addr string) *api.Server {
		t.Helper()
		srv, err := api.New(api.Config{Store: e.store, Proxy: api.ProxyEndpoint{Host: "127.0.0.1", Port: e.proxy.PlainAddr().Port,
			TLSPort: e.proxy.TLSAddr().Port, CAPEM: e.proxy.CAPEM(), HostSubject: e.proxy.HostSubject()}})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(addr); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		return srv
	}
	a1 := start("127.0.0.1:0")
	base := a1.URL()
	session := func() (*spice.Session, string) {
		t.Helper()
		resp, err := http.Get(base + "/console/proxy/lab/" + e.uuid(0) + "/console.vv")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		f, err := vv.Parse(body)
		if err != nil {
			t.Fatalf("%s: %v", resp.Status, err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(f.CA))
		d := &spice.Dialer{Host: f.Host, TLSPort: f.TLSPort, Password: f.Password, CA: pool, HostSubject: f.HostSubject}
		s, err := d.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s, resp.Header.Get(api.HeaderSession)
	}
	s, id := session()
	defer s.Close()
	in, err := s.Open(ctx, spice.ChannelInputs, 0)
	if err != nil {
		t.Fatal(err)
	}
	key := func(when string) {
		t.Helper()
		n := len(e.server(0).KeysDown())
		in.KeyPress(0x1e)
		eventually(t, 3*time.Second, "a key "+when, func() bool { return len(e.server(0).KeysDown()) > n })
	}
	key("before the restart")

	if err := a1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the API still answers after Shutdown")
	}
	key("while the API is down")
	start(strings.TrimPrefix(base, "http://"))
	key("after the restart")
	cur, err := s.Open(ctx, spice.ChannelCursor, 0)
	if err != nil {
		t.Fatalf("opening a channel after the API restart: %v", err)
	}

	// Terminate through the new API reaches the session.
	t0 := time.Now()
	resp, err := http.Post(base+"/session/"+id+"/terminate", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("terminate through the new API: %s", resp.Status)
	}
	// Terminate closes the channels before it answers: the clients see
	// their EOF next (bounded by the test's context only).
	for _, c := range []*spice.Channel{s.Main, in, cur} {
		select {
		case <-c.Done():
		case <-ctx.Done():
			t.Fatalf("%s still open after terminate through the restarted API", c.ID)
		}
	}
	t.Logf("terminate through the restarted API closed the session in %v", time.Since(t0).Round(time.Millisecond))
	s2, _ := session()
	s2.Close()
}

func TestFaultShutdownUnderLoad(t *testing.T) {
	const sessions = 6
	servers := make([]*spicetest.Server, sessions)
	for i := range servers {
		servers[i] = &spicetest.Server{StreamBytes: 1 << 40}
	}
	e := newEnv(t, nil, servers...)
	ctx := ctxT(t)
	baseline := goleak.IgnoreCurrent()

	type sess struct {
		m     store.Minted
		s     *spice.Session
		chans []*spice.Channel
	}
	all := make([]sess, sessions)
	for i := range all {
		m, s, chans := fullSession(ctx, t, e, i)
		all[i] = sess{m, s, chans}
	}
	eventually(t, 5*time.Second, "the streams under way", func() bool {
		return metric(t, e, "spice_proxy_bytes_total", "channel", "display", "direction", "to_client") > 16<<20
	})

	// Half the sessions end by themselves during the drain; the rest are
	// still streaming at the deadline.
	const drain = 800 * time.Millisecond
	sctx, cancel := context.WithTimeout(ctx, drain)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- e.proxy.Shutdown(sctx) }()
	// Draining: the listeners are closed, the channels still relay.
	eventually(t, 5*time.Second, "Shutdown to start draining", func() bool { return !e.proxy.Stats().Listening })
	for _, x := range all[:sessions/2] {
		x.s.Close()
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(drain + 5*time.Second):
		t.Fatal("Shutdown did not return 5 s after its drain deadline")
	}
	took := time.Since(start)
	if diff := cmp.Diff(context.DeadlineExceeded, err, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("unexpected Shutdown result (-want +got):\n%s", diff)
	}
	for i, x := range all {
		want := "main channel closed: closed"
		if i >= sessions/2 {
			want = "main channel closed: shutdown"
			for _, c := range x.chans {
				select {
				case <-c.Done():
				case <-time.After(time.Second):
					t.Errorf("session %d: %s still open after Shutdown returned", i, c.ID)
				}
			}
			x.s.Close()
		}
		info, _ := e.store.Session(x.m.SessionID)
		if diff := cmp.Diff("ended: "+want, info.State+": "+info.Reason); diff != "" {
			t.Errorf("session %d: unexpected end (-want +got):\n%s", i, diff)
		}
	}
	if st := e.proxy.Stats(); st.Listening || st.Channels != 0 || st.Handshaking != 0 {
		t.Errorf("unexpected stats after Shutdown: %+v", st)
	}
	if got := metricSum(t, e, "spice_proxy_channels_active"); got != 0 {
		t.Errorf("channels_active after Shutdown: %v", got)
	}
	if c, err := net.DialTimeout("tcp", e.proxy.TLSAddr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the TLS listener still accepts after Shutdown")
	}
	for i, srv := range servers {
		if !srv.WaitIdle(2 * time.Second) {
			t.Errorf("backend %d still has %d connections", i, srv.Conns())
		}
		if srv.Crashed.Load() {
			t.Errorf("backend %d: a display channel was closed before DISPLAY_INIT was answered", i)
		}
	}
	noLeaks(t, baseline)
	t.Logf("Shutdown under load: %d sessions × 4 channels streaming, %d ended during the %v drain, %d cut; returned after %v; %.0f MiB relayed",
		sessions, sessions/2, drain, sessions-sessions/2, took.Round(time.Millisecond),
		metric(t, e, "spice_proxy_bytes_total", "channel", "display", "direction", "to_client")/(1<<20))
}
