package scenarios

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// hostileConnectAnswerWithin bounds how long a hostile CONNECT client
// waits for the proxy's answer before it gives up on its own.
const hostileConnectAnswerWithin = 15 * time.Second

func init() {
	Register(Scenario{
		Name: "tunnel-hostile-connect",
		Tier: Hardening,
		Description: "1 MiB heads, an endless request line, slowloris, random bytes, a TLS hello, a SPICE link, GET " +
			"and 100 silent connections at the CONNECT proxy, all at once beside a live tunnel session: none gets 200, " +
			"the session keeps typing, and a new tunnel opens after",
		Options:  tunnelLane,
		Requires: []harness.Capability{harness.CapTunnelVV},
		Needs:    []string{needScreenshot},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			vm := env.VM(0)
			f := fetchTunnelVV(ctx, t, env, vm)
			addr, _, err := spice.ParseProxyURL(f.Proxy)
			require.NoError(t, err, "the .vv's proxy=")
			s, err := harness.DialerFor(f).Connect(ctx)
			require.NoError(t, err, "the live tunnel session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)

			// The live session types while the abuse runs.
			stop := make(chan struct{})
			typed := keepTyping(inputs, "k", stop)

			link := (&spice.LinkMess{ChannelType: spice.ChannelMain, CommonCaps: spice.DefaultCommonCaps}).Marshal()
			consolePort := f.TLSPort
			if consolePort == 0 {
				consolePort = f.Port
			}
			hello := append([]byte{0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03}, randomBytes(200)...)
			classes := []struct {
				name string
				n    int
				send func(c net.Conn)
			}{
				{"1 MiB header", 4, func(c net.Conn) {
					io.WriteString(c, "CONNECT "+f.Host+":1 HTTP/1.0\r\nX-Fill: ")
					c.Write(bytes.Repeat([]byte("a"), 1<<20))
				}},
				// A whole head to the console's own port: a proxy without a
				// head limit would open this tunnel (200).
				{"1 MiB header, head complete, to the console's port", 4, func(c net.Conn) {
					fmt.Fprintf(c, "CONNECT %s:%d HTTP/1.0\r\nX-Fill: ", f.Host, consolePort)
					c.Write(bytes.Repeat([]byte("a"), 1<<20))
					io.WriteString(c, "\r\n\r\n")
				}},
				{"endless request line", 4, func(c net.Conn) { c.Write(append([]byte("CONNECT "), bytes.Repeat([]byte("b"), 64<<10)...)) }},
				{"slowloris, a byte per 100 ms for 3 s", 8, func(c net.Conn) {
					head := "CONNECT " + f.Host + ":1 HTTP/1.0\r\nHost: x\r\n"
					for i := 0; i < 30 && i < len(head); i++ {
						if _, err := c.Write([]byte{head[i]}); err != nil {
							return
						}
						time.Sleep(100 * time.Millisecond) // pacing: the slowloris client's byte per 100 ms
					}
				}},
				{"4 KiB of random bytes", 4, func(c net.Conn) { c.Write(randomBytes(4096)) }},
				{"TLS ClientHello", 4, func(c net.Conn) { c.Write(hello) }},
				{"SPICE link message", 4, func(c net.Conn) { c.Write(link) }},
				{"GET", 4, func(c net.Conn) { io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") }},
			}
			var mu sync.Mutex
			outcomes := map[string][]string{}
			var wg sync.WaitGroup
			for _, cl := range classes {
				for range cl.n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						start := time.Now()
						ans, err := hostileConnect(ctx, addr, cl.send)
						line := headLine(ans)
						if err != nil {
							line = "dial: " + err.Error()
						}
						mu.Lock()
						outcomes[cl.name] = append(outcomes[cl.name], fmt.Sprintf("%s after %v", line, time.Since(start).Round(time.Millisecond)))
						mu.Unlock()
						if bytes.HasPrefix(ans, []byte("HTTP/1.")) && len(ans) >= 12 && string(ans[9:12]) == "200" {
							t.Errorf("%s: the proxy answered %s", cl.name, line)
						}
					}()
				}
			}
			// 100 connections that say nothing, held until the abuse ends.
			var silent []net.Conn
			for range 100 {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					break // the listen backlog may be full: that is the point
				}
				silent = append(silent, c)
			}
			wg.Wait()
			close(stop)
			require.NoError(t, <-typed, "typing through the live session during the abuse")
			for _, cl := range classes {
				t.Logf("%s (%d): %s", cl.name, cl.n, strings.Join(outcomes[cl.name], "; "))
			}
			t.Logf("silent connections held: %d", len(silent))

			// The live session is intact.
			wantOpen(t, "during the abuse", s.Main, display, inputs, cursor)
			require.NoError(t, inputs.Type(" ok"), "type after the abuse")
			waitSerial(ctx, t, vm, `k ok`)
			for _, c := range silent {
				c.Close()
			}

			// A real client through a new tunnel.
			s.Close()
			g := fetchTunnelVV(ctx, t, env, vm)
			img, err := env.ScreenshotVV(ctx, g.File)
			require.NoError(t, err, "spicy-screenshot through a new tunnel after the abuse")
			require.False(t, img.Blank(), "blank capture after the abuse")
			alive(ctx, t, vm)
		},
	})
}

// hostileConnect connects to the CONNECT proxy at addr, sends what send
// writes (in the background: the proxy may answer and close first) and
// returns the start of the proxy's answer, empty if it closed without
// one or said nothing within hostileConnectAnswerWithin.
func hostileConnect(ctx context.Context, addr string, send func(net.Conn)) ([]byte, error) {
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	sent := make(chan struct{})
	go func() { defer close(sent); send(c) }()
	c.SetReadDeadline(time.Now().Add(hostileConnectAnswerWithin))
	var ans []byte
	buf := make([]byte, 512)
	for len(ans) < 512 {
		n, err := c.Read(buf)
		ans = append(ans, buf[:n]...)
		if err != nil || bytes.Contains(ans, []byte("\n")) {
			break
		}
	}
	c.Close()
	<-sent
	return ans, nil
}
