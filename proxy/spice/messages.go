package spice

import (
	"fmt"
)

// MainInit is SPICE_MSG_MAIN_INIT, the first message on a new main
// channel. SessionID is what every later channel sends as connection_id.
type MainInit struct {
	SessionID           uint32
	DisplayChannelsHint uint32
	SupportedMouseModes uint32
	CurrentMouseMode    uint32
	AgentConnected      uint32
	AgentTokens         uint32
	MultiMediaTime      uint32
	RAMHint             uint32
}

// MainInitSize is the body size of SPICE_MSG_MAIN_INIT.
const MainInitSize = 32

// ParseMainInit decodes a MAIN_INIT body (trailing bytes are ignored).
func ParseMainInit(b []byte) (MainInit, error) {
	if len(b) < MainInitSize {
		return MainInit{}, fmt.Errorf("%w: MAIN_INIT of %d bytes", ErrMalformed, len(b))
	}
	u := func(i int) uint32 { return le.Uint32(b[4*i:]) }
	return MainInit{u(0), u(1), u(2), u(3), u(4), u(5), u(6), u(7)}, nil
}

// Marshal encodes the 32-byte body.
func (m MainInit) Marshal() []byte {
	b := make([]byte, 0, MainInitSize)
	for _, v := range []uint32{m.SessionID, m.DisplayChannelsHint, m.SupportedMouseModes, m.CurrentMouseMode,
		m.AgentConnected, m.AgentTokens, m.MultiMediaTime, m.RAMHint} {
		b = le.AppendUint32(b, v)
	}
	return b
}

// ChannelID names one channel instance.
type ChannelID struct {
	Type ChannelType
	ID   uint8
}

func (c ChannelID) String() string { return fmt.Sprintf("%s:%d", c.Type, c.ID) }

// ParseChannelsList decodes SPICE_MSG_MAIN_CHANNELS_LIST.
func ParseChannelsList(b []byte) ([]ChannelID, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: CHANNELS_LIST of %d bytes", ErrMalformed, len(b))
	}
	n := uint64(le.Uint32(b))
	if 4+2*n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: CHANNELS_LIST claims %d channels in %d bytes", ErrMalformed, n, len(b))
	}
	out := make([]ChannelID, n)
	for i := range out {
		out[i] = ChannelID{ChannelType(b[4+2*i]), b[5+2*i]}
	}
	return out, nil
}

// MarshalChannelsList encodes a CHANNELS_LIST body.
func MarshalChannelsList(ids []ChannelID) []byte {
	b := le.AppendUint32(nil, uint32(len(ids)))
	for _, id := range ids {
		b = append(b, byte(id.Type), id.ID)
	}
	return b
}

// SetAck is SPICE_MSG_SET_ACK.
type SetAck struct {
	Generation uint32
	Window     uint32
}

// ParseSetAck decodes a SET_ACK body.
func ParseSetAck(b []byte) (SetAck, error) {
	if len(b) < 8 {
		return SetAck{}, fmt.Errorf("%w: SET_ACK of %d bytes", ErrMalformed, len(b))
	}
	return SetAck{le.Uint32(b), le.Uint32(b[4:])}, nil
}

// Marshal encodes a SET_ACK body.
func (s SetAck) Marshal() []byte {
	return le.AppendUint32(le.AppendUint32(nil, s.Generation), s.Window)
}

// MarshalAckSync encodes SPICE_MSGC_ACK_SYNC.
func MarshalAckSync(generation uint32) []byte { return le.AppendUint32(nil, generation) }

// Ping is SPICE_MSG_PING; payload padding is not kept.
type Ping struct {
	ID        uint32
	Timestamp uint64
}

// PingSize is the part of a PING a PONG echoes.
const PingSize = 12

// ParsePing decodes a PING body (padding ignored).
func ParsePing(b []byte) (Ping, error) {
	if len(b) < PingSize {
		return Ping{}, fmt.Errorf("%w: PING of %d bytes", ErrMalformed, len(b))
	}
	return Ping{le.Uint32(b), le.Uint64(b[4:])}, nil
}

// Marshal encodes a PING or PONG body (12 bytes, no padding).
func (p Ping) Marshal() []byte { return le.AppendUint64(le.AppendUint32(nil, p.ID), p.Timestamp) }

// Notify is SPICE_MSG_NOTIFY.
type Notify struct {
	Timestamp  uint64
	Severity   uint32 // 0 info, 1 warn, 2 error
	Visibility uint32 // 0 low, 1 medium, 2 high
	What       uint32
	Message    string
}

// ParseNotify decodes a NOTIFY body.
func ParseNotify(b []byte) (Notify, error) {
	if len(b) < 24 {
		return Notify{}, fmt.Errorf("%w: NOTIFY of %d bytes", ErrMalformed, len(b))
	}
	n := Notify{Timestamp: le.Uint64(b), Severity: le.Uint32(b[8:]), Visibility: le.Uint32(b[12:]), What: le.Uint32(b[16:])}
	l := uint64(le.Uint32(b[20:]))
	if 24+l > uint64(len(b)) {
		return Notify{}, fmt.Errorf("%w: NOTIFY message of %d bytes in %d", ErrMalformed, l, len(b))
	}
	n.Message = string(b[24 : 24+l])
	return n, nil
}

// Marshal encodes a NOTIFY body, message followed by one NUL not counted
// in its length.
func (n Notify) Marshal() []byte {
	b := le.AppendUint64(nil, n.Timestamp)
	for _, v := range []uint32{n.Severity, n.Visibility, n.What, uint32(len(n.Message))} {
		b = le.AppendUint32(b, v)
	}
	return append(append(b, n.Message...), 0)
}

// Disconnecting is SPICE_MSG_DISCONNECTING / SPICE_MSGC_DISCONNECTING.
type Disconnecting struct {
	Timestamp uint64
	Reason    LinkErr
}

// Marshal encodes the 12-byte body.
func (d Disconnecting) Marshal() []byte {
	return le.AppendUint32(le.AppendUint64(nil, d.Timestamp), uint32(d.Reason))
}

// ParseDisconnecting decodes a DISCONNECTING body.
func ParseDisconnecting(b []byte) (Disconnecting, error) {
	if len(b) < 12 {
		return Disconnecting{}, fmt.Errorf("%w: DISCONNECTING of %d bytes", ErrMalformed, len(b))
	}
	return Disconnecting{le.Uint64(b), LinkErr(le.Uint32(b[8:]))}, nil
}

// DisplayInit is SPICE_MSGC_DISPLAY_INIT (14 bytes). spice-server sends
// nothing on a display channel until it arrives.
type DisplayInit struct {
	PixmapCacheID         uint8
	PixmapCacheSize       int64
	GLZDictionaryID       uint8
	GLZDictionaryWindowSz int32
}

// DefaultDisplayInit is what spice-gtk sends.
var DefaultDisplayInit = DisplayInit{PixmapCacheID: 1, PixmapCacheSize: 20 << 20, GLZDictionaryID: 1, GLZDictionaryWindowSz: 1 << 22}

// Marshal encodes the 14-byte body.
func (d DisplayInit) Marshal() []byte {
	b := []byte{d.PixmapCacheID}
	b = le.AppendUint64(b, uint64(d.PixmapCacheSize))
	b = append(b, d.GLZDictionaryID)
	return le.AppendUint32(b, uint32(d.GLZDictionaryWindowSz))
}

// ScancodeDown and ScancodeUp encode a PC/AT set-1 scancode for
// SPICE_MSGC_INPUTS_KEY_DOWN/KEY_UP the way spice-gtk does: extended keys
// (0x100+) get the 0xe0 prefix, releases set 0x80.
func ScancodeDown(sc uint16) uint32 {
	if sc < 0x100 {
		return uint32(sc)
	}
	return 0xe0 | uint32(sc-0x100)<<8
}

// ScancodeUp is the release code of sc.
func ScancodeUp(sc uint16) uint32 {
	if sc < 0x100 {
		return uint32(sc) | 0x80
	}
	return 0x80e0 | uint32(sc-0x100)<<8
}

// MarshalKey encodes a KEY_DOWN or KEY_UP body.
func MarshalKey(code uint32) []byte { return le.AppendUint32(nil, code) }

// Scancodes maps printable ASCII (lower case, digits, space, Enter) to
// PC/AT set-1 scancodes, for typing into the guest.
var Scancodes = map[rune]uint16{
	'1': 0x02, '2': 0x03, '3': 0x04, '4': 0x05, '5': 0x06, '6': 0x07, '7': 0x08, '8': 0x09, '9': 0x0a, '0': 0x0b,
	'-': 0x0c, '=': 0x0d, 'q': 0x10, 'w': 0x11, 'e': 0x12, 'r': 0x13, 't': 0x14, 'y': 0x15, 'u': 0x16, 'i': 0x17,
	'o': 0x18, 'p': 0x19, '[': 0x1a, ']': 0x1b, '\n': 0x1c, 'a': 0x1e, 's': 0x1f, 'd': 0x20, 'f': 0x21, 'g': 0x22,
	'h': 0x23, 'j': 0x24, 'k': 0x25, 'l': 0x26, ';': 0x27, '\'': 0x28, '`': 0x29, '\\': 0x2b, 'z': 0x2c, 'x': 0x2d,
	'c': 0x2e, 'v': 0x2f, 'b': 0x30, 'n': 0x31, 'm': 0x32, ',': 0x33, '.': 0x34, '/': 0x35, ' ': 0x39,
}
