package spice

import "fmt"

// Cursor flags (cursor_flags, u16).
const (
	CursorFlagNone      uint16 = 1 << 0 // no cursor: no header follows
	CursorFlagCacheMe   uint16 = 1 << 1
	CursorFlagFromCache uint16 = 1 << 2
)

// CursorHeader is SpiceCursorHeader (17 bytes).
type CursorHeader struct {
	Unique             uint64
	Type               uint8
	Width, Height      uint16
	HotSpotX, HotSpotY uint16
}

// Cursor is SpiceCursor: flags, a header unless CursorFlagNone, then the
// shape's data to the end of the message.
type Cursor struct {
	Flags  uint16
	Header *CursorHeader
	Data   []byte
}

func parseCursor(b []byte, what string) (Cursor, error) {
	if len(b) < 2 {
		return Cursor{}, fmt.Errorf("%w: %s cursor of %d bytes", ErrMalformed, what, len(b))
	}
	c := Cursor{Flags: le.Uint16(b)}
	b = b[2:]
	if c.Flags&CursorFlagNone == 0 {
		if len(b) < 17 {
			return Cursor{}, fmt.Errorf("%w: %s cursor header of %d bytes", ErrMalformed, what, len(b))
		}
		c.Header = &CursorHeader{Unique: le.Uint64(b), Type: b[8], Width: le.Uint16(b[9:]), Height: le.Uint16(b[11:]),
			HotSpotX: le.Uint16(b[13:]), HotSpotY: le.Uint16(b[15:])}
		b = b[17:]
	}
	c.Data = b
	return c, nil
}

// CursorInit is SPICE_MSG_CURSOR_INIT: position (two i16), trail length
// and frequency (u16 each), visible (u8), then the cursor. qemu 7.2
// sends 11 bytes with CursorFlagNone before the guest sets a shape.
type CursorInit struct {
	X, Y                        int16
	TrailLength, TrailFrequency uint16
	Visible                     bool
	Cursor                      Cursor
}

// ParseCursorInit decodes the body.
func ParseCursorInit(b []byte) (CursorInit, error) {
	if len(b) < 9 {
		return CursorInit{}, fmt.Errorf("%w: CURSOR_INIT of %d bytes", ErrMalformed, len(b))
	}
	c := CursorInit{X: int16(le.Uint16(b)), Y: int16(le.Uint16(b[2:])), TrailLength: le.Uint16(b[4:]),
		TrailFrequency: le.Uint16(b[6:]), Visible: b[8] != 0}
	var err error
	c.Cursor, err = parseCursor(b[9:], "CURSOR_INIT")
	return c, err
}

// CursorSet is SPICE_MSG_CURSOR_SET: position, visible, cursor.
type CursorSet struct {
	X, Y    int16
	Visible bool
	Cursor  Cursor
}

// ParseCursorSet decodes the body.
func ParseCursorSet(b []byte) (CursorSet, error) {
	if len(b) < 5 {
		return CursorSet{}, fmt.Errorf("%w: CURSOR_SET of %d bytes", ErrMalformed, len(b))
	}
	c := CursorSet{X: int16(le.Uint16(b)), Y: int16(le.Uint16(b[2:])), Visible: b[4] != 0}
	var err error
	c.Cursor, err = parseCursor(b[5:], "CURSOR_SET")
	return c, err
}

// ParseCursorMove decodes SPICE_MSG_CURSOR_MOVE: the new position.
func ParseCursorMove(b []byte) (x, y int16, err error) {
	if len(b) < 4 {
		return 0, 0, fmt.Errorf("%w: CURSOR_MOVE of %d bytes", ErrMalformed, len(b))
	}
	return int16(le.Uint16(b)), int16(le.Uint16(b[2:])), nil
}
