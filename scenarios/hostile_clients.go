package scenarios

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/spiceharness/spiceharness/harness"
	"github.com/spiceharness/spiceharness/proxy/spice"
)

// hostileHandshake is the proxy's handshake deadline in hostile-clients
// and ws-hostile. It bounds the live session's links too (each waits
// for qemu's reply): 2 s cut a live link on a loaded 2-core machine.
const hostileHandshake = 4 * time.Second

func init() {
	Register(Scenario{
		Name:      "hostile-clients",
		Tier:      Hardening,
		Exercises: ProxySPICE,
		Description: "bad magic, a 4 GiB header after link, slowloris, garbage, 200 connect-and-close and a display that never reads, " +
			"all at once beside a live session: the session keeps working, spicy-screenshot works after, both qemus stay alive",
		Needs:    []string{needScreenshot},
		Requires: []harness.Capability{harness.CapTerminatesSPICE},
		// The live session on one VM, the hostile channels in a session
		// of the other: spice-server serves one session at a time.
		Options: []harness.Option{harness.VMs(2), harness.HandshakeTimeout(hostileHandshake)},
		Run: func(ctx context.Context, t harness.T, env *harness.Env) {
			legitVM, hostileVM := env.VM(0), env.VM(1)
			s, _, err := env.Connect(ctx, harness.Proxy, legitVM)
			require.NoError(t, err, "live session")
			defer s.Close()
			display, inputs, cursor := openAll(ctx, t, s)
			hs, hf, err := env.Connect(ctx, harness.Proxy, hostileVM)
			require.NoError(t, err, "session of the hostile channels")
			defer hs.Close()

			h := &hostile{f: hf, sessionID: hs.ID, addr: net.JoinHostPort(hf.Host, strconv.Itoa(hf.Port)),
				ours: harness.HasCapability(env.Target(), harness.CapInProcess)}
			if hf.TLSPort != 0 {
				d := harness.DialerFor(hf)
				h.tlsConf = spice.TLSConfig(d.CA, hf.Host, hf.HostSubject)
				h.addr = net.JoinHostPort(hf.Host, strconv.Itoa(hf.TLSPort))
			}
			// How long the slowloris may live: the proxy's handshake
			// deadline when the target tells it, else a generous bound.
			h.cutMin, h.cutMax = 0, hangBound
			if d, ok := env.Target().(harness.HandshakeDeadliner); ok && d.HandshakeDeadline() > 0 {
				h.cutMin, h.cutMax = d.HandshakeDeadline(), d.HandshakeDeadline()+3*time.Second
			}

			nr := h.neverReadingDisplay(t)
			for range 5 {
				require.NoError(t, hostileVM.SendKeys(ctx, "a", "b", "c", "ret"), "keys into the hostile session's guest (display updates)")
			}

			// The live session types while the abuse runs.
			stop := make(chan struct{})
			typed := keepTyping(inputs, "k", stop)

			var wg sync.WaitGroup
			for _, abuse := range []struct {
				name string
				run  func() error
			}{
				{"bad magic", h.badMagic},
				{"4 GiB header after link", h.hugeHeader},
				{"slowloris", h.slowloris},
				{"garbage (random bytes)", func() error { return h.garbage(randomBytes(1024)) }},
				{"garbage (HTTP request)", func() error { return h.garbage([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) }},
				{"200 connect-and-close", h.connectClose},
			} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					if err := abuse.run(); err != nil {
						t.Errorf("%s: %v", abuse.name, err)
						return
					}
					t.Logf("%s: handled as expected in %v", abuse.name, time.Since(start).Round(time.Millisecond))
				}()
			}
			wg.Wait()
			close(stop)
			require.NoError(t, <-typed, "typing through the live session during the abuse")

			// The live session is intact.
			wantOpen(t, "during the abuse", s.Main, display, inputs, cursor)
			// (At most 8 keys at a time: qemu's PS/2 queue holds 16
			// scancodes, and a slow TCG guest loses the rest of a burst.)
			require.NoError(t, inputs.Type(" ok"), "type after the abuse")
			waitSerial(ctx, t, legitVM, `k ok`)
			c2, err := s.Open(ctx, spice.ChannelCursor, 0)
			require.NoError(t, err, "open a channel after the abuse")
			c2.Close()

			// The display that never read is closed; qemu must survive it.
			require.NoError(t, nr.Close(), "close the never-reading display")
			survives(ctx, t, hostileVM, 1500*time.Millisecond)
			alive(ctx, t, legitVM)

			// A real client through the proxy, on both VMs.
			s.Close()
			hs.Close()
			for _, vm := range env.VMs {
				img, err := env.ScreenshotProxy(ctx, vm)
				require.NoError(t, err, "spicy-screenshot through the proxy after the abuse on %s", vm)
				if img.Blank() {
					t.Errorf("spicy-screenshot of %s after the abuse is blank", vm)
				}
			}
		},
	})
}

// hostile holds what the abusive clients need: the proxy's TLS address
// and, for channels that get past the link, a session of their own.
type hostile struct {
	f              *harness.VVResponse
	sessionID      uint32
	tlsConf        *tls.Config
	addr           string
	cutMin, cutMax time.Duration
	// ours: this repository's proxy, whose own conventions (an
	// INVALID_MAGIC reply to bad magic) are checked too.
	ours bool
}

// dial connects as the .vv's clients would: TLS when it has a tls-port.
func (h *hostile) dial() (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if h.tlsConf == nil {
		return d.Dial("tcp", h.addr)
	}
	return tls.DialWithDialer(d, "tcp", h.addr, h.tlsConf)
}

// closedWithin reads c until the proxy closes it, failing after max.
func closedWithin(c net.Conn, max time.Duration) (time.Duration, error) {
	start := time.Now()
	c.SetReadDeadline(start.Add(max))
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return 0, fmt.Errorf("still open after %v", max)
			}
			return time.Since(start), nil
		}
	}
}

// badMagic sends a link message with a wrong magic. Any refusal will do
// (a link reply with an error code, or a close without a reply: spice-gtk
// stops either way); an OK reply or silence will not. This repository's
// proxy answers INVALID_MAGIC, its convention.
func (h *hostile) badMagic() error {
	c, err := h.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	m := (&spice.LinkMess{ChannelType: spice.ChannelMain, CommonCaps: spice.DefaultCommonCaps}).Marshal()
	binary.LittleEndian.PutUint32(m, 0xdeadbeef)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write(m)
	r, err := spice.ReadLinkReply(c, spice.DefaultMaxLinkSize)
	switch {
	case err == nil && r.Error == spice.LinkOK:
		return fmt.Errorf("answered with an OK link reply")
	case err != nil && timedOut(err):
		return fmt.Errorf("neither answered nor closed within 10 s")
	case err != nil && !closed(err):
		return fmt.Errorf("unexpected answer: %w", err)
	}
	if h.ours && (err != nil || r.Error != spice.ErrInvalidMagic) {
		got := "a close without a reply"
		if err == nil {
			got = r.Error.Name()
		}
		return fmt.Errorf("unexpected answer of this repository's proxy (its convention) (-want +got):\n-%s reply\n+%s", spice.ErrInvalidMagic.Name(), got)
	}
	if err != nil {
		return nil // closed without a reply: refused
	}
	_, err = closedWithin(c, 5*time.Second)
	return err
}

// link links a channel of the hostile session on a raw TLS connection.
func (h *hostile) link(typ spice.ChannelType) (net.Conn, error) {
	c, err := h.dial()
	if err != nil {
		return nil, err
	}
	m := &spice.LinkMess{ConnectionID: h.sessionID, ChannelType: typ, CommonCaps: spice.DefaultCommonCaps, ChannelCaps: spice.ClientChannelCaps(typ)}
	if _, err := spice.Link(c, m, h.f.Password, spice.LinkOptions{Deadline: time.Now().Add(10 * time.Second)}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// hugeHeader links inputs, waits for INPUTS_INIT, then sends a header
// claiming 4 GiB: the proxy must close that channel at once.
func (h *hostile) hugeHeader() error {
	c, err := h.link(spice.ChannelInputs)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := spice.NewReader(c, true, 0).ReadMessage(); err != nil {
		return fmt.Errorf("INPUTS_INIT: %w", err)
	}
	c.Write(spice.AppendHeader(nil, spice.Header{Type: spice.MsgcInputsKeyDown, Size: 0xffffffff}, true))
	_, err = closedWithin(c, 5*time.Second)
	return err
}

// slowloris sends a valid link one byte per second: the handshake
// deadline must cut it.
func (h *hostile) slowloris() error {
	// The proxy's deadline runs from its accept, which comes before the
	// TLS handshake in dial: the clock starts before the dial too.
	start := time.Now()
	c, err := h.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	m := (&spice.LinkMess{ChannelType: spice.ChannelMain, CommonCaps: spice.DefaultCommonCaps}).Marshal()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := range m {
			if _, err := c.Write(m[i : i+1]); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Second): // pacing: the slowloris client's byte a second
			}
		}
	}()
	if _, err := closedWithin(c, h.cutMax); err != nil {
		return err
	}
	if d := time.Since(start); d < h.cutMin {
		return fmt.Errorf("cut after %v, before the %v handshake deadline", d, h.cutMin)
	}
	return nil
}

// garbage sends b on the port without TLS.
func (h *hostile) garbage(b []byte) error {
	c, err := net.DialTimeout("tcp", h.addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.Write(b)
	_, err = closedWithin(c, 5*time.Second)
	return err
}

func (h *hostile) connectClose() error {
	for i := range 200 {
		c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		c.Close()
	}
	return nil
}

// neverReadingDisplay links display in the hostile session, sends
// DISPLAY_INIT, ACK_SYNC and thousands of ACKs, and never reads.
func (h *hostile) neverReadingDisplay(t harness.T) net.Conn {
	c, err := h.link(spice.ChannelDisplay)
	require.NoError(t, err, "link the never-reading display")
	var msg bytes.Buffer
	msg.Write(spice.AppendHeader(nil, spice.Header{Type: spice.MsgcDisplayInit, Size: 14}, true))
	msg.Write(spice.DefaultDisplayInit.Marshal())
	msg.Write(spice.AppendHeader(nil, spice.Header{Type: spice.MsgcAckSync, Size: 4}, true))
	msg.Write(spice.MarshalAckSync(1))
	for range 4096 {
		msg.Write(spice.AppendHeader(nil, spice.Header{Type: spice.MsgcAck}, true))
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Write(msg.Bytes())
	require.NoError(t, err, "DISPLAY_INIT and ACKs")
	return c
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
