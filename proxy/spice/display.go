package spice

import (
	"context"
	"fmt"
	"sync"
)

// Rect is SpiceRect (four i32: top, left, bottom, right).
type Rect struct{ Top, Left, Bottom, Right int32 }

func parseRect(b []byte) Rect {
	return Rect{int32(le.Uint32(b)), int32(le.Uint32(b[4:])), int32(le.Uint32(b[8:])), int32(le.Uint32(b[12:]))}
}

func (r Rect) appendTo(b []byte) []byte {
	for _, v := range []int32{r.Top, r.Left, r.Bottom, r.Right} {
		b = le.AppendUint32(b, uint32(v))
	}
	return b
}

// Clip types.
const (
	ClipNone  uint8 = 0
	ClipRects uint8 = 1
)

// Clip is SpiceClip: u8 type, and for RECTS u32 count and the rects,
// inline.
type Clip struct {
	Type  uint8
	Rects []Rect
}

func parseClip(b []byte, what string) (Clip, []byte, error) {
	if len(b) < 1 {
		return Clip{}, nil, fmt.Errorf("%w: %s without a clip", ErrMalformed, what)
	}
	c := Clip{Type: b[0]}
	b = b[1:]
	if c.Type != ClipRects {
		return c, b, nil
	}
	if len(b) < 4 {
		return Clip{}, nil, fmt.Errorf("%w: %s clip without a count", ErrMalformed, what)
	}
	n := uint64(le.Uint32(b))
	b = b[4:]
	if 16*n > uint64(len(b)) {
		return Clip{}, nil, fmt.Errorf("%w: %s clip claims %d rects in %d bytes", ErrMalformed, what, n, len(b))
	}
	for range n {
		c.Rects = append(c.Rects, parseRect(b))
		b = b[16:]
	}
	return c, b, nil
}

func (c Clip) appendTo(b []byte) []byte {
	b = append(b, c.Type)
	if c.Type == ClipRects {
		b = le.AppendUint32(b, uint32(len(c.Rects)))
		for _, r := range c.Rects {
			b = r.appendTo(b)
		}
	}
	return b
}

// Video codecs of STREAM_CREATE.
const (
	CodecMJPEG uint8 = 1
	CodecVP8   uint8 = 2
	CodecH264  uint8 = 3
	CodecVP9   uint8 = 4
	CodecH265  uint8 = 5
)

// StreamCreate is SPICE_MSG_DISPLAY_STREAM_CREATE (51 bytes and the
// clip's rects): spice-server turned a frequently redrawn area into a
// video stream (with -spice streaming-video=all, or filter).
type StreamCreate struct {
	SurfaceID, ID             uint32
	Flags, Codec              uint8
	Stamp                     uint64
	StreamWidth, StreamHeight uint32
	SrcWidth, SrcHeight       uint32
	Dest                      Rect
	Clip                      Clip
}

// Marshal encodes the body.
func (s StreamCreate) Marshal() []byte {
	b := le.AppendUint32(le.AppendUint32(nil, s.SurfaceID), s.ID)
	b = le.AppendUint64(append(b, s.Flags, s.Codec), s.Stamp)
	for _, v := range []uint32{s.StreamWidth, s.StreamHeight, s.SrcWidth, s.SrcHeight} {
		b = le.AppendUint32(b, v)
	}
	return s.Clip.appendTo(s.Dest.appendTo(b))
}

// ParseStreamCreate decodes the body.
func ParseStreamCreate(b []byte) (StreamCreate, error) {
	if len(b) < 50 {
		return StreamCreate{}, fmt.Errorf("%w: STREAM_CREATE of %d bytes", ErrMalformed, len(b))
	}
	s := StreamCreate{SurfaceID: le.Uint32(b), ID: le.Uint32(b[4:]), Flags: b[8], Codec: b[9], Stamp: le.Uint64(b[10:]),
		StreamWidth: le.Uint32(b[18:]), StreamHeight: le.Uint32(b[22:]), SrcWidth: le.Uint32(b[26:]), SrcHeight: le.Uint32(b[30:]),
		Dest: parseRect(b[34:])}
	var err error
	s.Clip, _, err = parseClip(b[50:], "STREAM_CREATE")
	return s, err
}

// StreamData is SPICE_MSG_DISPLAY_STREAM_DATA (u32 id, u32 mm time, u32
// size, frame) or STREAM_DATA_SIZED (after the time: u32 width, u32
// height, the dest rect).
type StreamData struct {
	ID, MMTime    uint32
	Sized         bool
	Width, Height uint32 // sized only
	Dest          Rect   // sized only
	Data          []byte
}

// Marshal encodes a STREAM_DATA or, when Sized, STREAM_DATA_SIZED body.
func (d StreamData) Marshal() []byte {
	b := le.AppendUint32(le.AppendUint32(nil, d.ID), d.MMTime)
	if d.Sized {
		b = d.Dest.appendTo(le.AppendUint32(le.AppendUint32(b, d.Width), d.Height))
	}
	return append(le.AppendUint32(b, uint32(len(d.Data))), d.Data...)
}

// ParseStreamData decodes a STREAM_DATA (sized false) or
// STREAM_DATA_SIZED body.
func ParseStreamData(b []byte, sized bool) (StreamData, error) {
	head := 12
	if sized {
		head = 36
	}
	if len(b) < head {
		return StreamData{}, fmt.Errorf("%w: stream data of %d bytes", ErrMalformed, len(b))
	}
	d := StreamData{ID: le.Uint32(b), MMTime: le.Uint32(b[4:]), Sized: sized}
	p := b[8:]
	if sized {
		d.Width, d.Height, d.Dest = le.Uint32(p), le.Uint32(p[4:]), parseRect(p[8:])
		p = p[24:]
	}
	n := uint64(le.Uint32(p))
	if n > uint64(len(p)-4) {
		return StreamData{}, fmt.Errorf("%w: stream data claims %d bytes, carries %d", ErrMalformed, n, len(p)-4)
	}
	d.Data = p[4 : 4+n]
	return d, nil
}

// Head is one monitor of SPICE_MSG_DISPLAY_MONITORS_CONFIG.
type Head struct{ ID, SurfaceID, Width, Height, X, Y, Flags uint32 }

// DisplayMonitors is SPICE_MSG_DISPLAY_MONITORS_CONFIG: u16 count, u16
// max allowed, count heads of 7 u32.
type DisplayMonitors struct {
	MaxAllowed uint16
	Heads      []Head
}

// ParseDisplayMonitors decodes the body.
func ParseDisplayMonitors(b []byte) (DisplayMonitors, error) {
	if len(b) < 4 {
		return DisplayMonitors{}, fmt.Errorf("%w: MONITORS_CONFIG of %d bytes", ErrMalformed, len(b))
	}
	n := int(le.Uint16(b))
	m := DisplayMonitors{MaxAllowed: le.Uint16(b[2:])}
	if len(b) < 4+28*n {
		return DisplayMonitors{}, fmt.Errorf("%w: MONITORS_CONFIG claims %d heads in %d bytes", ErrMalformed, n, len(b))
	}
	for i := range n {
		p := b[4+28*i:]
		m.Heads = append(m.Heads, Head{le.Uint32(p), le.Uint32(p[4:]), le.Uint32(p[8:]), le.Uint32(p[12:]),
			le.Uint32(p[16:]), le.Uint32(p[20:]), le.Uint32(p[24:])})
	}
	return m, nil
}

// SurfaceCreate is SPICE_MSG_DISPLAY_SURFACE_CREATE (5 × u32).
type SurfaceCreate struct{ ID, Width, Height, Format, Flags uint32 }

// ParseSurfaceCreate decodes the body.
func ParseSurfaceCreate(b []byte) (SurfaceCreate, error) {
	if len(b) < 20 {
		return SurfaceCreate{}, fmt.Errorf("%w: SURFACE_CREATE of %d bytes", ErrMalformed, len(b))
	}
	return SurfaceCreate{le.Uint32(b), le.Uint32(b[4:]), le.Uint32(b[8:]), le.Uint32(b[12:]), le.Uint32(b[16:])}, nil
}

// StreamStats counts the video stream messages of a display channel.
type StreamStats struct {
	Created, Destroyed int
	DataMessages       int
	DataBytes          uint64
	Last               *StreamCreate // the latest STREAM_CREATE
}

// Display is a display channel (display:N) after DISPLAY_INIT, with its
// video streams counted; every message still reaches Recv.
type Display struct {
	*Channel

	mu      sync.Mutex
	changed chan struct{}
	stats   StreamStats
	surface *SurfaceCreate
}

// OpenDisplay links display:id and sends DISPLAY_INIT (the server sends
// nothing before it; see Channel.Close for why a display is never
// closed before the server answered).
func (s *Session) OpenDisplay(ctx context.Context, id uint8) (*Display, error) {
	d := &Display{changed: make(chan struct{})}
	ch, err := s.open(ctx, ChannelDisplay, id, dialOpts{setup: func(c *Channel) { c.tap = d.tap }})
	if err != nil {
		return nil, err
	}
	d.Channel = ch
	if err := ch.InitDisplay(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Display) tap(m Message) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch m.Type {
	case MsgDisplayStreamCreate:
		if s, err := ParseStreamCreate(m.Body); err == nil {
			d.stats.Created++
			d.stats.Last = &s
		}
	case MsgDisplayStreamData, MsgDisplayStreamDataSized:
		if s, err := ParseStreamData(m.Body, m.Type == MsgDisplayStreamDataSized); err == nil {
			d.stats.DataMessages++
			d.stats.DataBytes += uint64(len(s.Data))
		}
	case MsgDisplayStreamDestroy:
		d.stats.Destroyed++
	case MsgDisplaySurfaceCreate:
		if s, err := ParseSurfaceCreate(m.Body); err == nil {
			d.surface = &s
		}
	default:
		return false
	}
	close(d.changed)
	d.changed = make(chan struct{})
	return false
}

// Streams returns the stream counts so far.
func (d *Display) Streams() StreamStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// Surface returns the latest SURFACE_CREATE (nil before the first).
func (d *Display) Surface() *SurfaceCreate {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.surface
}

// WaitStreams waits until cond holds for the stream counts.
func (d *Display) WaitStreams(ctx context.Context, cond func(StreamStats) bool) (StreamStats, error) {
	for {
		d.mu.Lock()
		st, ch := d.stats, d.changed
		d.mu.Unlock()
		if cond(st) {
			return st, nil
		}
		select {
		case <-ch:
		case <-d.Done():
			return st, d.endErr()
		case <-ctx.Done():
			return st, fmt.Errorf("spice: waiting for video streams on %s (have %+v): %w", d.ID, st, ctx.Err())
		}
	}
}
