package scenarios

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

func init() {
	Register(Scenario{
		Name: "ws-hostile",
		Tier: Browser,
		Description: "a frame announcing 1 GiB, SPICE in text frames, garbage after the upgrade, a client that never sends its link " +
			"and one that never ends its upgrade, all at once beside a live WebSocket session: the session keeps typing, " +
			"nothing reaches qemu through a terminating gateway, and a session whose every frame is split at every byte works after",
		Requires: wsLane,
		// The live session on one VM, the hostile sockets on the other:
		// spice-server serves one session at a time.
		Options: []harness.Option{harness.VMs(2), harness.HandshakeTimeout(hostileHandshake)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			legitVM, hostileVM := env.VM(0), env.VM(1)
			s, err := harness.DialerFor(fetchWS(ctx, t, env, legitVM)).Connect(ctx)
			require.NoError(t, err, "live session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)

			// Each hostile client gets an endpoint of its own, fetched
			// before the watch: only the gateway can stop it.
			eps := map[string]*harness.VVResponse{}
			names := []string{"1 GiB frame", "text frames", "garbage", "no link", "no upgrade"}
			for _, n := range names {
				eps[n] = fetchWS(ctx, t, env, hostileVM)
			}
			// A gateway that relays bytes connects to qemu at the upgrade:
			// only a terminating one can keep everything from qemu.
			terminating := harness.HasCapability(env.Target(), harness.CapTerminatesSPICE)
			var w *harness.ConnWatch
			if terminating {
				w = hostileVM.WatchConnections()
				defer w.Close()
			}
			// How long the silent clients may live: the gateway's handshake
			// deadline when it names one; otherwise they are only watched.
			var cutMin, cutMax time.Duration
			if d, ok := env.Target().(harness.HandshakeDeadliner); ok && d.HandshakeDeadline() > 0 {
				cutMin, cutMax = d.HandshakeDeadline(), d.HandshakeDeadline()+3*time.Second
			}

			stop := make(chan struct{})
			typed := keepTyping(inputs, "k", stop)
			link := (&spice.LinkMess{ChannelType: spice.ChannelMain, CommonCaps: spice.DefaultCommonCaps, ChannelCaps: spice.ClientChannelCaps(spice.ChannelMain)}).Marshal()
			abuses := map[string]func(f *harness.VVResponse) (string, error){
				"1 GiB frame": func(f *harness.VVResponse) (string, error) {
					r, err := upgradeRaw(ctx, f)
					if err != nil {
						return "", err
					}
					defer r.Close()
					mask, err := r.writeHeader(opBinary, 1<<30)
					if err == nil {
						p := make([]byte, 64<<10)
						copy(p, link)
						for i := range p {
							p[i] ^= mask[i%4]
						}
						r.c.Write(p)
					}
					// A gateway may wait for the rest of the frame (websockify
					// buffers whole frames): only how it ended is reported; the
					// checks are the barrier and the live session.
					how, err := r.closedWithin(5 * time.Second)
					if err != nil {
						return "kept open 5 s, waiting for the rest of the frame", nil
					}
					return how, nil
				},
				"text frames": func(f *harness.VVResponse) (string, error) {
					r, err := upgradeRaw(ctx, f)
					if err != nil {
						return "", err
					}
					defer r.Close()
					// A whole link in text frames: a gateway that took them as
					// data would open the session.
					_, lerr := spice.Link(&frameConn{rawWS: r, op: opText}, &spice.LinkMess{ChannelType: spice.ChannelMain,
						CommonCaps: spice.DefaultCommonCaps, ChannelCaps: spice.ClientChannelCaps(spice.ChannelMain)}, f.Password,
						spice.LinkOptions{Deadline: time.Now().Add(10 * time.Second)})
					if lerr == nil {
						return "", fmt.Errorf("a link in text frames was answered OK")
					}
					how, err := r.closedWithin(10 * time.Second)
					return how + " (link: " + firstLine(lerr.Error()) + ")", err
				},
				"garbage": func(f *harness.VVResponse) (string, error) {
					r, err := upgradeRaw(ctx, f)
					if err != nil {
						return "", err
					}
					defer r.Close()
					r.writeFrame(opBinary, randomBytes(4096))
					return r.closedWithin(10 * time.Second)
				},
				"no link": func(f *harness.VVResponse) (string, error) {
					start := time.Now()
					r, err := upgradeRaw(ctx, f)
					if err != nil {
						return "", err
					}
					defer r.Close()
					return silentCut(start, cutMin, cutMax, func(d time.Duration) (string, error) { return r.closedWithin(d) })
				},
				"no upgrade": func(f *harness.VVResponse) (string, error) {
					start := time.Now()
					c, u, err := dialRaw(ctx, f.WebSocketURL)
					if err != nil {
						return "", err
					}
					defer c.Close()
					fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n", u.RequestURI(), u.Host)
					return silentCut(start, cutMin, cutMax, func(d time.Duration) (string, error) {
						c.SetReadDeadline(time.Now().Add(d))
						if _, err := io.Copy(io.Discard, c); err != nil && strings.Contains(err.Error(), "timeout") {
							return "", fmt.Errorf("still open after %v", d)
						}
						return "closed", nil
					})
				},
			}
			var wg sync.WaitGroup
			for _, n := range names {
				wg.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					how, err := abuses[n](eps[n])
					if err != nil {
						t.Errorf("%s: %v", n, err)
						return
					}
					t.Logf("%s: %s after %v", n, how, time.Since(start).Round(time.Millisecond))
				}()
			}
			wg.Wait()
			if terminating {
				nothingReached(ctx, t, "the hostile WebSockets", w)
			}
			close(stop)
			require.NoError(t, <-typed, "typing through the live session during the abuse")
			wantOpen(t, "during the abuse", s.Main, display, inputs, cursor)
			require.NoError(t, inputs.Type(" ok"), "type after the abuse")
			waitSerial(ctx, t, legitVM, `k ok`)
			alive(ctx, t, hostileVM)

			// Legal, and what a slow network does: every byte of every frame
			// in a TCP segment of its own. The session must open.
			d := harness.DialerFor(fetchWS(ctx, t, env, hostileVM))
			d.DialContext = byteDialer
			bs, err := d.Connect(ctx)
			require.NoError(t, err, "a session whose frames are split at every byte")
			defer bs.Close()
			_, bin, _ := openAll(ctx, t, bs)
			require.NoError(t, bin.Type("split"), "type, a byte per segment")
			waitSerial(ctx, t, hostileVM, `split`)
			alive(ctx, t, legitVM)
		},
	})
}

// silentCut waits for a client that sends nothing more to be cut: within
// [cutMin, cutMax] when the gateway names a deadline, else it only notes
// whether the gateway kept it for 3 s (a gateway without a deadline
// keeps it for good: reported, not failed, since none was promised).
func silentCut(start time.Time, cutMin, cutMax time.Duration, closed func(time.Duration) (string, error)) (string, error) {
	if cutMax == 0 {
		how, err := closed(3 * time.Second)
		if err != nil {
			return "kept open (the gateway names no handshake deadline)", nil
		}
		return how, nil
	}
	how, err := closed(time.Until(start.Add(cutMax)))
	if err != nil {
		return "", err
	}
	if d := time.Since(start); d < cutMin {
		return "", fmt.Errorf("cut after %v, before the %v handshake deadline", d, cutMin)
	}
	return how, nil
}
