package proxy_test

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"go.uber.org/goleak"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiceharness/spiceharness/proxy"
)

// The hostile CONNECT battery: abusive clients all at once against one
// CONNECT listener while a tunnel opened before them keeps relaying.
// Each case reports what its client observed (status line, or "closed"
// when the proxy closed without an answer) and how long its connection
// lived. `go test -race -run TestConnectBattery -v ./proxy` prints the
// table docs/tunnels.md shows.

// The battery's head deadline and pending cap.
const (
	connectBatteryHT  = time.Second
	connectBatteryCap = 64
)

type connectCase struct {
	name  string
	conns int // connections of this kind
	// want lists the acceptable outcomes: a status code, or "closed".
	want []string
	// atDeadline: the connection must live at least the head deadline.
	atDeadline bool
	run        func(c net.Conn, e *tunEnv) // writes the client's part
}

func connectCases(e *tunEnv) []connectCase {
	host := e.sign()
	pp := e.plain.port()
	trickle := func(b []byte, every time.Duration) func(net.Conn, *tunEnv) {
		return func(c net.Conn, _ *tunEnv) {
			for _, x := range b {
				if _, err := c.Write([]byte{x}); err != nil {
					return
				}
				time.Sleep(every)
			}
		}
	}
	write := func(s string) func(net.Conn, *tunEnv) {
		return func(c net.Conn, _ *tunEnv) { c.Write([]byte(s)) }
	}
	random := make([]byte, 4<<10)
	rand.Read(random)
	return []connectCase{
		{name: "1 MiB header", conns: 4, want: []string{"431"}, run: write(fmt.Sprintf("CONNECT %s:%d HTTP/1.0\r\nX: %s\r\n\r\n", host, pp, strings.Repeat("y", 1<<20)))},
		{name: "endless request line", conns: 4, want: []string{"414"}, run: write(strings.Repeat("C", 64<<10))},
		{name: "slowloris (a byte per 100 ms)", conns: 8, want: []string{"408"}, atDeadline: true,
			run: trickle(connectLine(host, pp), 100*time.Millisecond)},
		{name: "silent after connecting", conns: 8, want: []string{"408"}, atDeadline: true, run: func(net.Conn, *tunEnv) {}},
		{name: "4 KiB of random bytes", conns: 4, want: []string{"400", "414", "431", "505"}, run: write(string(random) + "\r\n\r\n")},
		{name: "TLS ClientHello", conns: 4, want: []string{"400"}, run: write("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")},
		{name: "SPICE link message", conns: 4, want: []string{"400"}, run: write("REDQ\x02\x00\x00\x00\x02\x00\x00\x00\x12\x00\x00\x00\r\n\r\n")},
		{name: "GET", conns: 4, want: []string{"405"}, run: write("GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")},
		{name: "CONNECT straight to qemu's address", conns: 4, want: []string{"403"}, run: write(fmt.Sprintf("CONNECT 127.0.0.1:%d HTTP/1.0\r\n\r\n", pp))},
		{name: "signed host, foreign port", conns: 4, want: []string{"403"}, run: write(string(connectLine(host, 22)))},
		{name: "half a head, then FIN", conns: 4, want: []string{"closed"}, run: func(c net.Conn, _ *tunEnv) {
			c.Write([]byte("CONNECT " + host))
			c.(*net.TCPConn).CloseWrite()
		}},
	}
}

// floodCase is the second phase: more connections at once than the
// pending cap, each stuck in its head. Exactly the cap's worth wait for
// the deadline; the rest are answered 503 at once.
func floodCase() connectCase {
	return connectCase{name: "many at once over the pending cap", conns: 100, want: []string{"408", "503"},
		run: func(c net.Conn, _ *tunEnv) { c.Write([]byte("CONNECT ")) }}
}

// outcomeOf reads what the proxy answered on c: its status code, or
// "closed".
func outcomeOf(c net.Conn) string {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "closed"
	}
	io.Copy(io.Discard, resp.Body)
	return fmt.Sprint(resp.StatusCode)
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func TestConnectBattery(t *testing.T) {
	e := newTunEnv(t, func(p *proxy.Proxy) {
		p.Tunnel.HeadTimeout = connectBatteryHT
		p.Tunnel.MaxPending = connectBatteryCap
	})
	live := e.open(e.sign(), e.plain.port())
	live.echo(t, "warm")
	baseline, goroutines0, fds0 := goleak.IgnoreCurrent(), runtime.NumGoroutine(), openFDs()

	// The live tunnel echoes a numbered line every 5 ms throughout.
	var echoes atomic.Int64
	var echoErr atomic.Pointer[string]
	stop := make(chan struct{})
	echoDone := make(chan struct{})
	go func() {
		defer close(echoDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			line := fmt.Sprintf("live %d\n", i)
			live.conn.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := live.conn.Write([]byte(line)); err != nil {
				s := err.Error()
				echoErr.Store(&s)
				return
			}
			if got, err := live.rest.ReadString('\n'); err != nil || got != line {
				s := fmt.Sprintf("echo %d: %q, %v", i, got, err)
				echoErr.Store(&s)
				return
			}
			echoes.Add(1)
		}
	}()

	type row struct {
		name     string
		outcomes map[string]int
		min, max time.Duration
		bad      []string
	}
	// Phase 1: every kind of hostile client at once (fewer than the
	// pending cap, so each gets its own answer); phase 2: a flood over
	// the cap.
	phase1 := connectCases(e)
	cases := append(phase1, floodCase())
	rows := make([]row, len(cases))
	var dials atomic.Int64
	echoes0 := echoes.Load()
	var wg sync.WaitGroup
	for i, tc := range cases {
		if i == len(phase1) {
			wg.Wait()
			eventually(t, 5*time.Second, "phase 1's pending slots free", func() bool { return e.metric("spice_proxy_connect_pending") == 0 })
		}
		rows[i] = row{name: tc.name, outcomes: map[string]int{}, min: time.Hour}
		var mu sync.Mutex
		for range tc.conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.connectPort))
				if err != nil {
					mu.Lock()
					rows[i].bad = append(rows[i].bad, "dial: "+err.Error())
					mu.Unlock()
					return
				}
				dials.Add(1)
				defer c.Close()
				go tc.run(c, e)
				got := outcomeOf(c)
				d := time.Since(start)
				mu.Lock()
				defer mu.Unlock()
				rows[i].outcomes[got]++
				rows[i].min, rows[i].max = min(rows[i].min, d), max(rows[i].max, d)
				ok := false
				for _, w := range tc.want {
					ok = ok || got == w
				}
				if !ok {
					rows[i].bad = append(rows[i].bad, got)
				}
				if tc.atDeadline && got == "408" && d < connectBatteryHT {
					rows[i].bad = append(rows[i].bad, fmt.Sprintf("408 after %v, before the deadline", d))
				}
			}()
		}
	}
	wg.Wait()
	during := echoes.Load() - echoes0
	close(stop)
	<-echoDone
	if p := echoErr.Load(); p != nil {
		t.Errorf("the live tunnel broke during the battery: %s", *p)
	}
	if during < 10 {
		t.Errorf("the live tunnel echoed %d lines during the battery, want a steady stream", during)
	}
	live.echo(t, "after the battery")

	var table strings.Builder
	fmt.Fprintf(&table, "| client (connections) | outcome | connection lived |\n|---|---|---|\n")
	for i, r := range rows {
		var outs []string
		for o, n := range r.outcomes {
			outs = append(outs, fmt.Sprintf("%s ×%d", o, n))
		}
		sort.Strings(outs)
		fmt.Fprintf(&table, "| %s (%d) | %s | %v – %v |\n", r.name, cases[i].conns, strings.Join(outs, ", "),
			r.min.Round(time.Millisecond), r.max.Round(time.Millisecond))
		if len(r.bad) > 0 {
			t.Errorf("%s: unexpected outcomes %v (want %v)", r.name, r.bad, cases[i].want)
		}
	}
	if flood := rows[len(rows)-1].outcomes; flood["408"] != connectBatteryCap || flood["503"] != floodCase().conns-connectBatteryCap {
		t.Errorf("flood of %d: %v, want %d × 408 (the pending cap) and the rest 503", floodCase().conns, flood, connectBatteryCap)
	}

	// Every connection was answered and counted, and nothing is left but
	// the live tunnel.
	eventually(t, 5*time.Second, "every battery connection counted", func() bool {
		var sum float64
		for _, r := range []string{"bad_request", "method_not_allowed", "bad_version", "too_large", "line_too_long", "timeout",
			"closed", "busy", "unknown_host", "bad_port"} {
			sum += e.metric("spice_proxy_connect_requests_total", "result", r)
		}
		return sum == float64(dials.Load())
	})
	var goroutines1, fds1 int
	eventually(t, 5*time.Second, "fds back to the baseline, one tunnel left", func() bool {
		goroutines1, fds1 = runtime.NumGoroutine(), openFDs()
		st := e.proxy.Stats()
		return fds1 <= fds0 && st.Connecting == 0 && st.Tunnels == 1
	})
	noLeaks(t, baseline)
	if e.plain.accepted.Load() != 1 || e.tls.accepted.Load() != 0 {
		t.Errorf("backends accepted %d and %d connections, want only the live tunnel's", e.plain.accepted.Load(), e.tls.accepted.Load())
	}
	fmt.Fprintf(&table, "\nlive tunnel: %d echoes during the battery, none lost; %d connections, all answered and counted; goroutines %d → %d, fds %d → %d\n",
		during, dials.Load(), goroutines0, goroutines1, fds0, fds1)
	t.Logf("hostile CONNECT battery (head deadline %v, pending cap %d):\n%s", connectBatteryHT, connectBatteryCap, table.String())
}
