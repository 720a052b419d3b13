package spice

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// VMCMaxData bounds the payload of one SPICEVMC_DATA the client sends
// (qemu's chardevs take any size; 64 KiB keeps messages under every
// proxy cap that still lets a spice-gtk WebDAV frame through).
const VMCMaxData = 64 << 10

// VMC is a spicevmc channel (usbredir, port, webdav) as a byte stream:
// the payload of every SPICEVMC_DATA in order (Read), and Write cut
// into DATA messages. It links without DATA_COMPRESS_LZ4, so the server
// never sends COMPRESSED_DATA (spice-gtk offers LZ4, and spice-server
// then compresses large usbredir payloads); one that arrives anyway
// ends the stream with an error.
type VMC struct {
	*Channel
	data *streamBuf
}

// ErrCompressedData: the server sent SPICEVMC_COMPRESSED_DATA although
// the client did not offer LZ4.
var ErrCompressedData = errors.New("spice: compressed spicevmc data not offered but received")

// OpenVMC links a spicevmc channel (usbredir, port or webdav) of this
// session as a byte stream.
func (s *Session) OpenVMC(ctx context.Context, t ChannelType, id uint8) (*VMC, error) {
	v := &VMC{data: newStreamBuf()}
	ch, err := s.open(ctx, t, id, dialOpts{caps: Caps{}, setup: v.install})
	if err != nil {
		return nil, err
	}
	v.Channel = ch
	return v, nil
}

func (v *VMC) install(c *Channel) {
	c.tap = v.tap
	c.closers = append(c.closers, func() { v.data.finish(c.err) })
}

func (v *VMC) tap(m Message) bool {
	switch m.Type {
	case MsgSpicevmcData:
		v.data.write(m.Body)
		return true
	case MsgSpicevmcCompressedData:
		v.data.finish(ErrCompressedData)
		return true
	}
	return false
}

// Write sends p in SPICEVMC_DATA messages of at most VMCMaxData bytes.
func (v *VMC) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), VMCMaxData)
		if err := v.Send(MsgcSpicevmcData, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// Read reads DATA payload bytes, waiting for at least one; io.EOF (or
// the reader's error) once the channel ended and everything was read.
func (v *VMC) Read(p []byte) (int, error) { return v.data.read(context.Background(), p) }

// ReadContext is Read bounded by ctx.
func (v *VMC) ReadContext(ctx context.Context, p []byte) (int, error) { return v.data.read(ctx, p) }

// ReadFull reads exactly n payload bytes.
func (v *VMC) ReadFull(ctx context.Context, n int) ([]byte, error) { return v.data.readFull(ctx, n) }

// Received is how many payload bytes arrived in all.
func (v *VMC) Received() uint64 { return v.data.received() }

// Port events (SPICE_PORT_EVENT_*), both ways.
const (
	PortEventOpened uint8 = 0
	PortEventClosed uint8 = 1
	PortEventBreak  uint8 = 2
)

// PortInit is SPICE_MSG_PORT_INIT, the first message on a port or
// webdav channel. On the wire (checked against qemu 7.2): u32 name_size
// (the name's length with its NUL), u32 offset of the name from the
// start of the body (9), u8 opened, then the NUL-terminated name.
type PortInit struct {
	Name   string
	Opened bool
}

// Marshal encodes the body as spice-server does.
func (p PortInit) Marshal() []byte {
	b := le.AppendUint32(nil, uint32(len(p.Name)+1))
	b = le.AppendUint32(b, 9)
	b = append(b, boolByte(p.Opened))
	return append(append(b, p.Name...), 0)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// ParsePortInit decodes the body.
func ParsePortInit(b []byte) (PortInit, error) {
	if len(b) < 9 {
		return PortInit{}, fmt.Errorf("%w: PORT_INIT of %d bytes", ErrMalformed, len(b))
	}
	size, off := uint64(le.Uint32(b)), uint64(le.Uint32(b[4:]))
	if size == 0 || off+size > uint64(len(b)) {
		return PortInit{}, fmt.Errorf("%w: PORT_INIT name of %d bytes at %d in %d", ErrMalformed, size, off, len(b))
	}
	name := string(b[off : off+size])
	return PortInit{Name: strings.TrimSuffix(name, "\x00"), Opened: b[8] != 0}, nil
}

// Port is a port (or webdav) channel: a VMC with the port's name and
// whether the guest has it open. The guest opening or closing its
// virtio port arrives as PORT_EVENT; SendEvent sends the client's.
type Port struct {
	*VMC
	Init PortInit

	mu      sync.Mutex
	opened  bool
	events  []uint8
	changed chan struct{}
}

// OpenPort finds the port channel named name (from CHANNELS_LIST and
// each port channel's PORT_INIT; names under org.spice-space.webdav.
// are webdav channels) and links it. Channels it opened to look at are
// closed again.
func (s *Session) OpenPort(ctx context.Context, name string) (*Port, error) {
	list, err := s.ChannelsList(ctx)
	if err != nil {
		return nil, err
	}
	t := ChannelPort
	if strings.HasPrefix(name, "org.spice-space.webdav.") {
		t = ChannelWebdav
	}
	var seen []string
	for _, id := range list {
		if id.Type != t {
			continue
		}
		p, err := s.openPort(ctx, t, id.ID)
		if err != nil {
			return nil, err
		}
		if p.Init.Name == name {
			return p, nil
		}
		seen = append(seen, p.Init.Name)
		p.Close()
		s.forget(p.Channel)
	}
	return nil, fmt.Errorf("spice: no port channel named %q (the server offers %q)", name, seen)
}

// OpenWebDAV links webdav:0, the folder sharing port.
func (s *Session) OpenWebDAV(ctx context.Context) (*Port, error) {
	return s.openPort(ctx, ChannelWebdav, 0)
}

func (s *Session) openPort(ctx context.Context, t ChannelType, id uint8) (*Port, error) {
	p := &Port{VMC: &VMC{data: newStreamBuf()}, changed: make(chan struct{})}
	ch, err := s.open(ctx, t, id, dialOpts{caps: Caps{}, setup: p.install})
	if err != nil {
		return nil, err
	}
	p.Channel = ch
	if err := p.wait(ctx, func() bool { return p.Init.Name != "" }); err != nil {
		return nil, fmt.Errorf("spice: waiting for PORT_INIT on %s: %w", ch.ID, err)
	}
	return p, nil
}

func (p *Port) install(c *Channel) {
	c.tap = p.tap
	c.closers = append(c.closers, func() {
		p.data.finish(c.err)
		p.mu.Lock()
		p.notify()
		p.mu.Unlock()
	})
}

func (p *Port) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Port) tap(m Message) bool {
	switch m.Type {
	case MsgPortInit:
		if in, err := ParsePortInit(m.Body); err == nil {
			p.mu.Lock()
			p.Init, p.opened = in, in.Opened
			p.notify()
			p.mu.Unlock()
		}
		return false
	case MsgPortEvent:
		if len(m.Body) >= 1 {
			p.mu.Lock()
			p.events = append(p.events, m.Body[0])
			switch m.Body[0] {
			case PortEventOpened:
				p.opened = true
			case PortEventClosed:
				p.opened = false
			}
			p.notify()
			p.mu.Unlock()
		}
		return false
	}
	return p.VMC.tap(m)
}

func (p *Port) wait(ctx context.Context, cond func() bool) error {
	for {
		p.mu.Lock()
		if cond() {
			p.mu.Unlock()
			return nil
		}
		ch := p.changed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-p.Done():
			return p.endErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Opened reports whether the guest has the port open (PORT_INIT, then
// the latest PORT_EVENT).
func (p *Port) Opened() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened
}

// WaitOpened waits until the guest has the port open.
func (p *Port) WaitOpened(ctx context.Context) error {
	return p.wait(ctx, func() bool { return p.opened })
}

// Events returns the PORT_EVENTs received so far.
func (p *Port) Events() []uint8 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint8(nil), p.events...)
}

// SendEvent sends SPICE_MSGC_PORT_EVENT (qemu acts on BREAK only).
func (p *Port) SendEvent(ev uint8) error { return p.Send(MsgcPortEvent, []byte{ev}) }

// forget drops a channel the session no longer has to close.
func (s *Session) forget(c *Channel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.chans {
		if x == c {
			s.chans = append(s.chans[:i], s.chans[i+1:]...)
			return
		}
	}
}
