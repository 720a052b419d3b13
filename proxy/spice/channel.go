package spice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// recvQueue is how many unread messages a channel keeps; past it the
// oldest are dropped (and counted) so the reader keeps answering pings
// and ACKs for a test that only watches other channels.
const recvQueue = 256

// Channel is one linked SPICE channel of the Go client. A goroutine reads
// it, answers PING with PONG and SET_ACK with ACK_SYNC, and ACKs every
// window of messages, so the server never stalls it; the messages are
// also delivered to Recv and WaitFor.
type Channel struct {
	ID     ChannelID
	Conn   net.Conn
	Reply  *LinkReply // the server's link reply (its caps)
	Mini   bool       // mini data headers in use
	Secure bool       // linked over TLS
	// FollowedNeedSecured: the plain port answered NEED_SECURED and the
	// channel was re-linked on the TLS port.
	FollowedNeedSecured bool

	w     *Writer
	msgs  chan Message
	first chan struct{} // closed when the first message arrives
	done  chan struct{} // closed when the reader stops
	err   error         // why the reader stopped; read after done

	// tap, when set, sees every message on the reader goroutine after
	// the PING/SET_ACK handling and before delivery; a message it
	// returns true for is consumed (never queued for Recv). Typed
	// channels (Agent on main, VMC, Port, Mouse…) install one before
	// the reader starts. It must not block on the network.
	tap func(Message) bool
	// closers run when the reader stops, before done is closed.
	closers []func()

	closeOnce   sync.Once
	displayInit atomic.Bool
	dropped     atomic.Uint64
	received    atomic.Uint64
}

// newChannel starts the reader of a linked channel; setup, when not
// nil, runs first (to install a tap).
func newChannel(conn net.Conn, m *LinkMess, reply *LinkReply, secure bool, maxSize uint32, setup func(*Channel)) *Channel {
	mini := UseMiniHeader(m.CommonCaps, reply.CommonCaps)
	c := &Channel{
		ID:     ChannelID{m.ChannelType, m.ChannelID},
		Conn:   conn,
		Reply:  reply,
		Mini:   mini,
		Secure: secure,
		w:      NewWriter(conn, mini),
		msgs:   make(chan Message, recvQueue),
		first:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	if setup != nil {
		setup(c)
	}
	go c.readChannel(NewReader(conn, mini, maxSize))
	return c
}

func (c *Channel) readChannel(r *Reader) {
	defer close(c.done)
	defer func() {
		for _, f := range c.closers {
			f()
		}
	}()
	var window, unacked uint32
	for {
		msg, err := r.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		if c.received.Add(1) == 1 {
			close(c.first)
		}
		switch msg.Type {
		case MsgPing:
			if p, err := ParsePing(msg.Body); err == nil {
				c.w.WriteMessage(MsgcPong, p.Marshal())
			}
		case MsgSetAck:
			if a, err := ParseSetAck(msg.Body); err == nil {
				window, unacked = a.Window, 0
				c.w.WriteMessage(MsgcAckSync, MarshalAckSync(a.Generation))
			}
		default:
			if window > 0 {
				if unacked++; unacked >= window {
					unacked = 0
					c.w.WriteMessage(MsgcAck, nil)
				}
			}
		}
		if c.tap != nil && c.tap(msg) {
			continue
		}
		c.deliver(msg)
	}
}

func (c *Channel) deliver(msg Message) {
	for {
		select {
		case c.msgs <- msg:
			return
		default:
		}
		select {
		case <-c.msgs:
			c.dropped.Add(1)
		default:
		}
	}
}

// Recv returns the next message, or the reason the channel ended once
// every queued message has been read.
func (c *Channel) Recv(ctx context.Context) (Message, error) {
	select {
	case m := <-c.msgs:
		return m, nil
	default:
	}
	select {
	case m := <-c.msgs:
		return m, nil
	case <-c.done:
		select {
		case m := <-c.msgs:
			return m, nil
		default:
		}
		return Message{}, c.endErr()
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// ErrChannelClosed is returned by Recv after Close.
var ErrChannelClosed = errors.New("spice: channel closed")

func (c *Channel) endErr() error {
	if c.err == nil {
		return ErrChannelClosed
	}
	return fmt.Errorf("spice: %s: %w", c.ID, c.err)
}

// WaitFor discards messages until one of the given types arrives.
func (c *Channel) WaitFor(ctx context.Context, types ...uint16) (Message, error) {
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			return m, err
		}
		for _, t := range types {
			if m.Type == t {
				return m, nil
			}
		}
	}
}

// Send writes one message on the channel.
func (c *Channel) Send(typ uint16, body []byte) error {
	if c.ID.Type == ChannelDisplay && typ == MsgcDisplayInit {
		c.displayInit.Store(true)
	}
	return c.w.WriteMessage(typ, body)
}

// Done is closed when the channel's reader stops (peer closed, error or
// Close).
func (c *Channel) Done() <-chan struct{} { return c.done }

// Err is why the reader stopped (nil before Done is closed).
func (c *Channel) Err() error {
	select {
	case <-c.done:
		return c.endErr()
	default:
		return nil
	}
}

// Stats reports messages received and messages dropped unread.
func (c *Channel) Stats() (received, dropped uint64) { return c.received.Load(), c.dropped.Load() }

// DisplayCloseGuard bounds how long closing a display channel waits for
// the server to answer DISPLAY_INIT.
const DisplayCloseGuard = 2 * time.Second

// Close closes the channel and waits for its reader.
//
// A display channel is closed only after the server answered
// DISPLAY_INIT (its first message, SET_ACK): closing earlier — before
// DISPLAY_INIT, or right after sending it — segfaults spice-server 0.15
// and the whole VM (measured: 5 of 5 each way; waiting for the answer:
// 0 of 5). So Close sends DISPLAY_INIT if it was never sent and waits
// up to DisplayCloseGuard for the first message.
func (c *Channel) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if c.ID.Type == ChannelDisplay {
			if !c.displayInit.Load() {
				c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
				c.Send(MsgcDisplayInit, DefaultDisplayInit.Marshal())
			}
			t := time.NewTimer(DisplayCloseGuard)
			select {
			case <-c.first:
			case <-c.done:
			case <-t.C:
			}
			t.Stop()
		}
		err = c.Conn.Close()
		<-c.done
	})
	return err
}

// InitDisplay sends SPICE_MSGC_DISPLAY_INIT; the server sends nothing on
// a display channel before it.
func (c *Channel) InitDisplay() error {
	return c.Send(MsgcDisplayInit, DefaultDisplayInit.Marshal())
}

// IsDraw reports whether a display message type draws on a surface.
func IsDraw(t uint16) bool {
	return (t >= MsgDisplayDrawFill && t <= 313) || t == MsgDisplayDrawComposite || t == MsgDisplayCopyBits
}

// WaitFirstDraw waits for SURFACE_CREATE and then the first draw
// message on a display channel (after InitDisplay).
func (c *Channel) WaitFirstDraw(ctx context.Context) (surface, draw Message, err error) {
	if surface, err = c.WaitFor(ctx, MsgDisplaySurfaceCreate); err != nil {
		return surface, draw, fmt.Errorf("spice: waiting for SURFACE_CREATE: %w", err)
	}
	for {
		if draw, err = c.Recv(ctx); err != nil {
			return surface, draw, fmt.Errorf("spice: waiting for the first draw: %w", err)
		}
		if IsDraw(draw.Type) {
			return surface, draw, nil
		}
	}
}

// KeyPress sends KEY_DOWN and KEY_UP for a set-1 scancode.
func (c *Channel) KeyPress(sc uint16) error {
	if err := c.Send(MsgcInputsKeyDown, MarshalKey(ScancodeDown(sc))); err != nil {
		return err
	}
	return c.Send(MsgcInputsKeyUp, MarshalKey(ScancodeUp(sc)))
}

// TypeKeyDelay paces Type. qemu's PS/2 keyboard queue holds 16
// scancodes (8 key presses): a burst longer than that loses its tail
// (measured: " survived" arrived as " surviv" in 5 of 6 runs, straight
// to qemu as well as through the proxy). The guest's vCPU must drain the
// queue between presses: at 15 ms a loaded 2-core machine that starved
// it for a few hundred ms lost keys of a 40-key line now and then; 25 ms
// leaves 8 presses 200 ms.
const TypeKeyDelay = 25 * time.Millisecond

// Type presses the keys for s (characters in Scancodes only), one every
// TypeKeyDelay.
func (c *Channel) Type(s string) error {
	for i, r := range s {
		if i > 0 {
			time.Sleep(TypeKeyDelay)
		}
		sc, ok := Scancodes[r]
		if !ok {
			return fmt.Errorf("spice: no scancode for %q", r)
		}
		if err := c.KeyPress(sc); err != nil {
			return err
		}
	}
	return nil
}
