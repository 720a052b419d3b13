package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/spiceharness/spiceharness/internal/mutant"

	"github.com/spiceharness/spiceharness/proxy/spice"
)

// errFirewall is returned when the firewall closes a channel.
var errFirewall = errors.New("firewall")

// pump relays framed messages from l.src to l.dst until EOF (nil) or an
// error. Headers are validated before anything is allocated. The first
// message goes message by message (it is main's MAIN_INIT, or qemu's
// answer to DISPLAY_INIT); after it, legs that need no per-message
// rewriting stream (see stream).
func (ch *channel) pump(l *leg) error {
	var hdr [spice.FullHeaderSize]byte
	hsz := spice.HeaderSize(l.srcMini)
	for n := 0; ; n++ {
		if n > 0 && ch.canStream(l) {
			return ch.stream(l)
		}
		if err := ch.readFull(l.src, hdr[:hsz]); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		h := spice.DecodeHeader(hdr[:hsz], l.srcMini)
		if l.dir == ToClient && n == 0 {
			ch.backendSpokeOnce.Do(func() { close(ch.backendSpoke) })
		}
		if err := ch.check(l, h); err != nil {
			return err
		}
		var err error
		handled := false
		if ch.mutated(l) {
			handled, err = ch.mutate(l, h)
		}
		switch {
		case handled:
		case l.dir == ToClient && ch.typ == spice.ChannelMain && n == 0:
			err = ch.forwardMainInit(l, h)
		case l.dir == ToServer && ch.typ == spice.ChannelDisplay:
			ch.toServerMu.Lock()
			err = ch.forward(l, h)
			if err == nil && h.Type == spice.MsgcDisplayInit {
				ch.displayInit = true
			}
			ch.toServerMu.Unlock()
		default:
			err = ch.forward(l, h)
		}
		if err != nil {
			return err
		}
		if n == 0 {
			ch.tr.relayed(l.dir)
		}
		ch.touch()
	}
}

// canStream reports whether l can be relayed by chunks: both legs frame
// alike (no header to rewrite), and it is not the client→qemu side of a
// display channel, whose messages must stay whole so that the display
// guard can inject a DISPLAY_INIT between two of them.
func (ch *channel) canStream(l *leg) bool {
	if mutant.On(ch.p, mutant.StoreAndForward) {
		// The mutant: message by message, each read whole (forward
		// reads up to a chunk) before any of it is written.
		return false
	}
	return l.srcMini == l.dstMini && !(l.dir == ToServer && ch.typ == spice.ChannelDisplay) && !ch.mutated(l)
}

// stream relays l.src to l.dst by chunks rather than message by message:
// it reads whatever has arrived (up to a chunk), walks the message
// headers inside it, each checked by the firewall before any byte of it
// is written, and writes everything up to the last complete header in
// one Write. A header split across reads is held back and completed by
// the next read; a blocked message is never written, the messages before
// it are. So a stream of 64 KiB messages costs about one read and one
// write per 64 KiB, and small messages that arrive together go out
// together.
//
// A pooled chunk is held only while a message crosses: when a read ends
// on a message boundary and did not fill its buffer (the source is
// drained), the chunk goes back to the pool and the pump waits on a
// small buffer on its stack.
//
// Toward a TLS peer, a chunk that ends on a message boundary goes out in
// two Writes: the messages before its last one, then its last one alone,
// so that the last TLS record carries bytes of no other message
// (crypto/tls never merges two Writes into one record). spice-gtk 0.42
// reads TLS with OpenSSL and looks for its next message only while the
// socket is readable, never in what OpenSSL already decrypted: a whole
// message left in the last record after the end of another waits there
// until more bytes reach the socket, and the session hangs when the
// server then waits for the client (measured through this relay under
// load: main stuck before its PINGs and CHANNELS_LIST). Records before
// the last are safe: the last one is still in the socket while they are
// read.
func (ch *channel) stream(l *leg) error {
	hsz := spice.HeaderSize(l.srcMini)
	_, lastAlone := l.dst.(*tls.Conn)
	var idle [idleReadSize]byte
	var bp *[]byte
	defer func() {
		if bp != nil {
			chunkPool.Put(bp)
		}
	}()
	buf := idle[:]
	pend := 0 // bytes of a split header at the start of buf
	left := 0 // body bytes of the current message still to come
	shared := mutant.On(ch.p, mutant.SharedRelayLock)
	held := false
	defer func() {
		if held {
			ch.p.relayMu.Unlock()
		}
	}()
	for {
		n, rerr := ch.readSome(l.src, buf[pend:])
		if shared && n > 0 && !held {
			// The mutant: one lock for every relay, taken when a
			// message starts crossing and kept until it has crossed.
			ch.p.relayMu.Lock()
			held = true
		}
		end := pend + n
		i, msgs := 0, 0
		last := 0 // where the chunk's last message starts
		var ferr error
		for i < end {
			if left > 0 {
				k := min(left, end-i)
				i, left = i+k, left-k
				continue
			}
			if end-i < hsz {
				break // a split header: held back
			}
			h := spice.DecodeHeader(buf[i:i+hsz], l.srcMini)
			if ferr = ch.check(l, h); ferr != nil {
				break
			}
			last = i
			i, left = i+hsz, int(h.Size)
			msgs++
		}
		if i > 0 {
			w := 0
			if lastAlone && left == 0 && last > 0 {
				if _, err := l.dst.Write(buf[:last]); err != nil {
					return err
				}
				w = last
			}
			if _, err := l.dst.Write(buf[w:i]); err != nil {
				return err
			}
			l.bytes.Add(float64(i))
			l.msgs.Add(float64(msgs))
			ch.sent[l.dir].Add(int64(i))
			ch.touch()
		}
		if ferr != nil {
			return ferr
		}
		filled := end == len(buf)
		pend = end - i
		if held && pend == 0 && left == 0 {
			ch.p.relayMu.Unlock()
			held = false
		}
		if rerr != nil {
			if rerr == io.EOF {
				if pend > 0 || left > 0 {
					return io.ErrUnexpectedEOF
				}
				return nil
			}
			return rerr
		}
		switch {
		case pend == 0 && left == 0 && !filled:
			if bp != nil {
				chunkPool.Put(bp)
				bp = nil
			}
			buf = idle[:]
		case bp == nil:
			bp = chunkPool.Get().(*[]byte)
			copy(*bp, buf[i:end])
			buf = *bp
		default:
			copy(buf, buf[i:end])
		}
	}
}

// readSome reads what has arrived into b (at least one byte, unless
// an error), waking up every IdleTimeout like readFull.
func (ch *channel) readSome(c net.Conn, b []byte) (int, error) {
	idle := ch.idleTimeout()
	for {
		if idle > 0 {
			c.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := c.Read(b)
		if n > 0 || err == nil {
			return n, err
		}
		if idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) && ch.quietFor() < idle {
			continue
		}
		return 0, err
	}
}

// readFull reads len(b) bytes. With an IdleTimeout it wakes up every
// IdleTimeout and gives up only if neither direction moved meanwhile.
func (ch *channel) readFull(c net.Conn, b []byte) error {
	idle := ch.idleTimeout()
	got := 0
	for got < len(b) {
		if idle > 0 {
			c.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := c.Read(b[got:])
		got += n
		if err == nil {
			continue
		}
		if idle > 0 && errors.Is(err, os.ErrDeadlineExceeded) && ch.quietFor() < idle {
			continue
		}
		if err == io.EOF && got > 0 {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// idleTimeout is the channel's own idle limit: the proxy's IdleTimeout,
// none on a WebSocket channel, whose limit is its session's
// (WebSocketConfig.IdleTimeout, applied by wsConn).
func (ch *channel) idleTimeout() time.Duration {
	if _, ok := ch.rawClient.(*wsConn); ok {
		return 0
	}
	return ch.p.IdleTimeout
}

// check applies the firewall to a header.
func (ch *channel) check(l *leg, h spice.Header) error {
	verdict := func(v string) {
		ch.p.metrics.verdicts.WithLabelValues(ch.label(), l.dir.String(), v).Inc()
	}
	if h.Size > HardMaxMessage {
		verdict("blocked")
		ch.log.Warn("firewall: message over the hard limit, closing", "direction", l.dir.String(), "type", h.Type, "size", h.Size)
		return fmt.Errorf("%w: %s type %d of %d bytes is over the %d-byte hard limit", errFirewall, l.dir, h.Type, h.Size, HardMaxMessage)
	}
	if ch.mutantCap(h) {
		return fmt.Errorf("%w: %s type %d of %d bytes is over the 64 KiB cap (mutant)", errFirewall, l.dir, h.Type, h.Size)
	}
	if ch.p.Firewall == FirewallOff {
		return nil
	}
	var why string
	switch {
	case !l.rule.Allows(l.dir, h.Type):
		why = "message type not allowed on this channel"
	case h.Size > l.rule.MaxSize:
		why = fmt.Sprintf("over the %d-byte cap", l.rule.MaxSize)
	default:
		return nil
	}
	if ch.p.Firewall == FirewallWarn {
		verdict("warned")
		if !ch.firstWarn[l.dir].Swap(true) {
			ch.log.Warn("firewall (warn only): "+why, "direction", l.dir.String(), "type", h.Type, "size", h.Size)
		}
		return nil
	}
	verdict("blocked")
	ch.log.Warn("firewall: "+why+", closing", "direction", l.dir.String(), "type", h.Type, "size", h.Size)
	return fmt.Errorf("%w: %s type %d (%d bytes): %s", errFirewall, l.dir, h.Type, h.Size, why)
}

// outHeader is h as written to l.dst: verbatim when both legs use full
// headers (serials pass through), renumbered when re-framing to full.
func (ch *channel) outHeader(l *leg, h spice.Header) spice.Header {
	if !l.dstMini {
		if l.srcMini {
			l.serial++
			h.Serial, h.SubList = l.serial, 0
		} else {
			l.serial = h.Serial
		}
		if l.dir == ToServer {
			ch.toServerSerial = h.Serial
		}
	}
	return h
}

// forward writes h and its body from l.src to l.dst through a pooled
// buffer, header and first chunk in one write.
func (ch *channel) forward(l *leg, h spice.Header) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	if mutant.On(ch.p, mutant.StoreAndForward) {
		// The mutant: the whole message in one buffer, read before
		// any of it is written.
		buf = make([]byte, spice.FullHeaderSize+int(h.Size))
	}
	out := spice.AppendHeader(buf[:0], ch.outHeader(l, h), l.dstMini)
	hlen := len(out)
	left := int(h.Size)
	total := hlen + left
	for first := true; first || left > 0; first = false {
		n := min(left, len(buf)-len(out))
		if err := ch.readFull(l.src, buf[len(out):len(out)+n]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if _, err := l.dst.Write(buf[:len(out)+n]); err != nil {
			return err
		}
		left -= n
		out = buf[:0]
	}
	l.bytes.Add(float64(total))
	l.msgs.Inc()
	ch.sent[l.dir].Add(int64(total))
	return nil
}

// forwardMainInit reads main's first message, which must be MAIN_INIT,
// records the session id, then forwards it.
func (ch *channel) forwardMainInit(l *leg, h spice.Header) error {
	if h.Type != spice.MsgMainInit || h.Size < spice.MainInitSize || h.Size > 4096 {
		return fmt.Errorf("backend's first main message is type %d (%d bytes), not MAIN_INIT", h.Type, h.Size)
	}
	body := make([]byte, h.Size)
	if err := ch.readFull(l.src, body); err != nil {
		return err
	}
	init, err := spice.ParseMainInit(body)
	if err != nil {
		return err
	}
	ch.lease.Established(init.SessionID)
	ch.log.Info("session established", "spice_session_id", fmt.Sprintf("%#x", init.SessionID))
	out := spice.AppendHeader(nil, ch.outHeader(l, h), l.dstMini)
	out = append(out, body...)
	if _, err := l.dst.Write(out); err != nil {
		return err
	}
	l.bytes.Add(float64(len(out)))
	l.msgs.Inc()
	ch.sent[l.dir].Add(int64(len(out)))
	return nil
}
