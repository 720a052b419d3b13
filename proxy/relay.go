package proxy

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiceharness/spiceharness/internal/mutant"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiceharness/spiceharness/proxy/spice"
	"github.com/spiceharness/spiceharness/proxy/store"
)

// chunkSize is the relay's copy buffer. Buffers come from a pool and are
// held only while a message crosses, so an idle channel holds none.
const chunkSize = 64 << 10

// idleReadSize is the on-stack buffer a streaming pump waits on between
// messages, so that a quiet channel holds no pooled chunk.
const idleReadSize = 512

var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// channel is one linked client channel and its backend, relaying.
type channel struct {
	p     *Proxy
	log   *slog.Logger
	lease *store.Lease
	typ   spice.ChannelType
	id    uint8

	client, backend         net.Conn
	rawClient               net.Conn // the TCP conn under client (for bookkeeping)
	clientMini, backendMini bool

	tr        *tracer // nil unless the proxy traces
	entry     *store.Channel
	done      chan struct{}
	closeOnce sync.Once
	reason    atomic.Pointer[string]

	// toServerMu is held while a message is written to the backend, so a
	// DISPLAY_INIT injected on close never lands inside another message.
	toServerMu     sync.Mutex
	toServerSerial uint64 // last serial written to the backend (full headers)
	displayInit    bool   // a DISPLAY_INIT went upstream (guarded by toServerMu)

	// backendSpoke is closed when qemu's first message on this channel
	// was read (on display: its answer to DISPLAY_INIT); toClientDone
	// when the backend→client pump ended. relaying says the pumps run.
	backendSpoke     chan struct{}
	backendSpokeOnce sync.Once
	toClientDone     chan struct{}
	relaying         atomic.Bool

	lastActive atomic.Int64 // unix nanos of the last message either way
	session    *sessionActivity
	sent       [2]atomic.Int64
	firstWarn  [2]atomic.Bool
}

// leg is one direction of the relay.
type leg struct {
	dir              Direction
	src, dst         net.Conn
	srcMini, dstMini bool
	rule             Rule
	bytes, msgs      prometheus.Counter
	serial           uint64 // out serial when re-framing to full headers
}

func (ch *channel) label() string { return ch.typ.String() }

// run relays until either side closes, then cleans up. It owns the
// channel's two copy goroutines.
func (ch *channel) run() {
	p := ch.p
	defer func() {
		p.mu.Lock()
		delete(p.channels, ch)
		p.mu.Unlock()
		close(ch.done)
	}()
	gauge := p.metrics.channels.WithLabelValues(ch.label())
	gauge.Inc()
	defer gauge.Dec()
	ch.attachActivity()
	defer ch.detachActivity()
	ch.touch()

	ch.log.Info("channel relaying", "client_mini", ch.clientMini, "backend_mini", ch.backendMini)
	ch.setNoDelay()

	rules := p.mutatedRules(ch.typ, p.Rules[ch.typ])
	legs := [2]*leg{
		ToServer: {dir: ToServer, src: ch.client, dst: ch.backend, srcMini: ch.clientMini, dstMini: ch.backendMini, rule: rules[ToServer]},
		ToClient: {dir: ToClient, src: ch.backend, dst: ch.client, srcMini: ch.backendMini, dstMini: ch.clientMini, rule: rules[ToClient]},
	}
	for _, l := range legs {
		l.bytes = p.metrics.bytes.WithLabelValues(ch.label(), l.dir.String())
		l.msgs = p.metrics.messages.WithLabelValues(ch.label(), l.dir.String())
	}
	ch.relaying.Store(true)
	type end struct {
		dir Direction
		err error
	}
	ends := make(chan end, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ends <- end{ToServer, ch.relayClientToBackend(legs[ToServer])} }()
	go func() {
		defer wg.Done()
		defer close(ch.toClientDone)
		ends <- end{ToClient, ch.relayBackendToClient(legs[ToClient])}
	}()

	first := <-ends
	err := first.err
	if err != nil && first.dir == ToServer && mutant.On(p, mutant.ResetKeepsBackend) {
		// The mutant: the client's side failed; close it alone and let
		// the backend pump find out when qemu next writes.
		ch.client.Close()
		err = errors.Join(err, (<-ends).err)
	}
	if err == nil {
		// One side half-closed: pass the FIN on and give the other
		// direction a moment to finish. qemu must not see a display
		// channel end before its DISPLAY_INIT.
		if first.dir == ToServer {
			ch.guardDisplay()
		}
		closeWrite(legs[first.dir].dst)
		t := time.AfterFunc(ch.halfCloseTimeout(), func() { ch.close("half-close timeout") })
		err = (<-ends).err
		t.Stop()
	}
	ch.close(reasonFor(err))
	wg.Wait()

	reason := *ch.reason.Load()
	ch.lease.Detach(ch.entry, reason)
	ch.log.Info("channel closed", "reason", reason, "bytes_to_server", ch.sent[ToServer].Load(), "bytes_to_client", ch.sent[ToClient].Load())
	if ch.typ == spice.ChannelMain {
		// spice-server ends the session with its main channel; so do we.
		ch.lease.End("main channel closed: " + reason)
		p.metrics.sessionsEnded.Inc()
	}
}

func (ch *channel) halfCloseTimeout() time.Duration {
	if ch.p.HalfCloseTimeout > 0 {
		return ch.p.HalfCloseTimeout
	}
	return DefaultHalfCloseTimeout
}

// setNoDelay turns Nagle's algorithm off on both legs' TCP sockets.
// Go's net package does so by default; the relay says so itself, since
// its latency rests on it: with Nagle on, a small message (a key, a
// cursor move, a small draw) that follows another before the peer
// acknowledged it waits for that ACK, up to the peer's 40 ms delayed-ACK
// timer.
func (ch *channel) setNoDelay() {
	on := !mutant.On(ch.p, mutant.NagleOn)
	for _, c := range []net.Conn{ch.rawClient, ch.client, ch.backend} {
		if tc := tcpOf(c); tc != nil {
			tc.SetNoDelay(on)
		}
	}
}

// tcpOf is the TCP connection under c (through TLS), or nil.
func tcpOf(c net.Conn) *net.TCPConn {
	for range 4 {
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

func reasonFor(err error) string {
	switch {
	case err == nil:
		return "closed"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "idle timeout"
	}
	return err.Error()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// close ends the channel at once (idempotent, safe from any goroutine):
// a display channel that never sent DISPLAY_INIT upstream gets one
// first, since closing it earlier crashes spice-server 0.15 and qemu.
func (ch *channel) close(reason string) {
	ch.closeOnce.Do(func() {
		ch.reason.Store(&reason)
		ch.client.Close() // unblocks the client→backend reader first
		ch.guardDisplay()
		ch.backend.Close()
	})
}

// guardDisplay keeps qemu alive when a display channel closes: it sends
// DISPLAY_INIT upstream if the client never did, then waits (up to
// spice.DisplayCloseGuard) until qemu has answered it. Closing a display
// channel before that answer — even right after DISPLAY_INIT — segfaults
// spice-server 0.15 (measured on qemu 7.2: 5 of 5; after the answer: 0).
func (ch *channel) guardDisplay() {
	if ch.typ != spice.ChannelDisplay || mutant.On(ch.p, mutant.NoDisplayGuard) {
		return
	}
	ch.backend.SetWriteDeadline(time.Now().Add(time.Second))
	ch.toServerMu.Lock()
	injected := false
	if !ch.displayInit {
		ch.toServerSerial++
		b := spice.AppendHeader(nil, spice.Header{Serial: ch.toServerSerial, Type: spice.MsgcDisplayInit, Size: 14}, ch.backendMini)
		b = append(b, spice.DefaultDisplayInit.Marshal()...)
		if _, err := ch.backend.Write(b); err == nil {
			ch.displayInit, injected = true, true
		}
	}
	ch.toServerMu.Unlock()
	if injected {
		ch.p.metrics.displayGuarded.Inc()
		ch.log.Info("sent DISPLAY_INIT upstream for a display channel the client closed before initialising it (spice-server 0.15 crashes otherwise)")
	}
	ch.waitBackendSpoke()
}

// waitBackendSpoke waits until qemu sent its first message on the
// channel, the backend→client pump ended, or the guard time passed.
func (ch *channel) waitBackendSpoke() {
	t := time.NewTimer(spice.DisplayCloseGuard)
	defer t.Stop()
	if !ch.relaying.Load() {
		// No pump reads the backend (the client left during the
		// handshake): read qemu's answer here.
		ch.backend.SetReadDeadline(time.Now().Add(spice.DisplayCloseGuard))
		spice.NewReader(ch.backend, ch.backendMini, HardMaxMessage).ReadHeader()
		return
	}
	select {
	case <-ch.backendSpoke:
	case <-ch.toClientDone:
	case <-t.C:
		ch.log.Warn("qemu did not answer DISPLAY_INIT in time; closing the display channel anyway")
	}
}

// relayClientToBackend copies client messages to qemu.
func (ch *channel) relayClientToBackend(l *leg) error { return ch.pump(l) }

// relayBackendToClient copies qemu messages to the client. On main, the
// first message must be MAIN_INIT: its session id is recorded before the
// client sees it, so the client's next channels find the session active.
func (ch *channel) relayBackendToClient(l *leg) error { return ch.pump(l) }
