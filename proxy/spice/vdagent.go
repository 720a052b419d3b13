package spice

import (
	"fmt"
)

// The agent protocol (spice-protocol vd_agent.h). The client and the
// guest's agent exchange VDAgentMessages: a 20-byte header (u32
// protocol = 1, u32 type, u64 opaque, u32 size) and size bytes of data.
//
// On the main channel the byte stream of each message is cut into
// SPICE_MSG(C)_MAIN_AGENT_DATA messages of at most AgentMaxDataSize
// (2048) bytes, a new message always starting a new AGENT_DATA:
// spice-server refuses (and drops the client for) an AGENT_DATA larger
// than 2048, or one carrying bytes past the end of the message it is
// in. Every AGENT_DATA costs the sender one token (see Agent).
//
// Between spice-server and the guest (the com.redhat.spice.0 virtio
// port) every piece travels behind an 8-byte VDIChunkHeader (u32 port,
// u32 size): port 1 is the client, port 2 spice-server itself. The
// server writes one chunk per AGENT_DATA (≤ 2048 bytes); spice-vdagent
// refuses bigger chunks ("chunk size too large") and itself writes each
// message as one chunk of any size, which the server cuts into
// AGENT_DATA pieces for the client.
const (
	AgentProtocol          = 1
	AgentMaxDataSize       = 2048
	AgentMessageHeaderSize = 20
	ChunkHeaderSize        = 8

	// Chunk ports.
	AgentPortClient uint32 = 1
	AgentPortServer uint32 = 2
)

// Agent message types (VD_AGENT_*).
const (
	AgentMouseState         uint32 = 1
	AgentMonitorsConfig     uint32 = 2
	AgentReply              uint32 = 3
	AgentClipboard          uint32 = 4
	AgentDisplayConfig      uint32 = 5
	AgentAnnounceCaps       uint32 = 6
	AgentClipboardGrab      uint32 = 7
	AgentClipboardRequest   uint32 = 8
	AgentClipboardRelease   uint32 = 9
	AgentFileXferStart      uint32 = 10
	AgentFileXferStatus     uint32 = 11
	AgentFileXferData       uint32 = 12
	AgentClientDisconnected uint32 = 13
	AgentMaxClipboard       uint32 = 14
	AgentAudioVolumeSync    uint32 = 15
	AgentGraphicsDeviceInfo uint32 = 16
)

// AgentMaxMessageSizeLimit bounds an agent message's data unless
// configured otherwise (an 8 MiB file travels in 64 KiB messages; a
// clipboard may be larger).
const AgentMaxMessageSizeLimit = 64 << 20

var agentMsgNames = [...]string{
	AgentMouseState: "MOUSE_STATE", AgentMonitorsConfig: "MONITORS_CONFIG", AgentReply: "REPLY",
	AgentClipboard: "CLIPBOARD", AgentDisplayConfig: "DISPLAY_CONFIG", AgentAnnounceCaps: "ANNOUNCE_CAPABILITIES",
	AgentClipboardGrab: "CLIPBOARD_GRAB", AgentClipboardRequest: "CLIPBOARD_REQUEST", AgentClipboardRelease: "CLIPBOARD_RELEASE",
	AgentFileXferStart: "FILE_XFER_START", AgentFileXferStatus: "FILE_XFER_STATUS", AgentFileXferData: "FILE_XFER_DATA",
	AgentClientDisconnected: "CLIENT_DISCONNECTED", AgentMaxClipboard: "MAX_CLIPBOARD", AgentAudioVolumeSync: "AUDIO_VOLUME_SYNC",
	AgentGraphicsDeviceInfo: "GRAPHICS_DEVICE_INFO",
}

// AgentTypeName names an agent message type ("CLIPBOARD_GRAB").
func AgentTypeName(t uint32) string {
	if t < uint32(len(agentMsgNames)) && agentMsgNames[t] != "" {
		return agentMsgNames[t]
	}
	return fmt.Sprintf("agent(%d)", t)
}

// Agent capability bits (VD_AGENT_CAP_*), announced in
// ANNOUNCE_CAPABILITIES. A field that depends on a cap (the clipboard
// selection byte, the grab serial) is present only when both ends
// announced it.
const (
	AgentCapMouseState                 = 0
	AgentCapMonitorsConfig             = 1
	AgentCapReply                      = 2
	AgentCapClipboard                  = 3
	AgentCapDisplayConfig              = 4
	AgentCapClipboardByDemand          = 5
	AgentCapClipboardSelection         = 6
	AgentCapSparseMonitorsConfig       = 7
	AgentCapGuestLineendLF             = 8
	AgentCapGuestLineendCRLF           = 9
	AgentCapMaxClipboard               = 10
	AgentCapAudioVolumeSync            = 11
	AgentCapMonitorsConfigPosition     = 12
	AgentCapFileXferDisabled           = 13
	AgentCapFileXferDetailedErrors     = 14
	AgentCapGraphicsDeviceInfo         = 15
	AgentCapClipboardNoReleaseOnRegrab = 16
	AgentCapClipboardGrabSerial        = 17
)

// Clipboard data types (VD_AGENT_CLIPBOARD_*).
const (
	ClipboardNone     uint32 = 0
	ClipboardUTF8Text uint32 = 1
	ClipboardPNG      uint32 = 2
	ClipboardBMP      uint32 = 3
	ClipboardTIFF     uint32 = 4
	ClipboardJPG      uint32 = 5
	ClipboardFileList uint32 = 6
)

// Clipboard selections (with AgentCapClipboardSelection).
const (
	SelectionClipboard uint8 = 0
	SelectionPrimary   uint8 = 1
	SelectionSecondary uint8 = 2
)

// File transfer results (VD_AGENT_FILE_XFER_STATUS_*).
const (
	XferCanSendData         uint32 = 0
	XferCancelled           uint32 = 1
	XferFailed              uint32 = 2 // VD_AGENT_FILE_XFER_STATUS_ERROR
	XferSuccess             uint32 = 3
	XferNotEnoughSpace      uint32 = 4
	XferSessionLocked       uint32 = 5
	XferVDAgentNotConnected uint32 = 6
	XferDisabled            uint32 = 7
)

// AgentReply errors (VD_AGENT_SUCCESS, VD_AGENT_ERROR).
const (
	AgentSuccess uint32 = 1
	AgentError   uint32 = 2
)

// AgentMessage is one VDAgentMessage.
type AgentMessage struct {
	Type   uint32
	Opaque uint64
	Data   []byte
}

func (m AgentMessage) String() string {
	return fmt.Sprintf("%s (%d bytes)", AgentTypeName(m.Type), len(m.Data))
}

// Marshal encodes header and data as one byte string.
func (m AgentMessage) Marshal() []byte {
	b := make([]byte, 0, AgentMessageHeaderSize+len(m.Data))
	b = AppendAgentHeader(b, m.Type, m.Opaque, uint32(len(m.Data)))
	return append(b, m.Data...)
}

// AppendAgentHeader appends a VDAgentMessage header.
func AppendAgentHeader(b []byte, typ uint32, opaque uint64, size uint32) []byte {
	b = le.AppendUint32(b, AgentProtocol)
	b = le.AppendUint32(b, typ)
	b = le.AppendUint64(b, opaque)
	return le.AppendUint32(b, size)
}

// Pieces cuts the message into AGENT_DATA bodies of at most
// AgentMaxDataSize bytes: the header and the first data bytes in the
// first piece, as spice-gtk does. They share the returned buffer.
func (m AgentMessage) Pieces() [][]byte {
	all := m.Marshal()
	out := make([][]byte, 0, (len(all)+AgentMaxDataSize-1)/AgentMaxDataSize)
	for len(all) > AgentMaxDataSize {
		out = append(out, all[:AgentMaxDataSize:AgentMaxDataSize])
		all = all[AgentMaxDataSize:]
	}
	return append(out, all)
}

// AgentAssembler rebuilds VDAgentMessages from the pieces they travel in
// (AGENT_DATA bodies, or the data of VDI chunks of one port), with the
// rule spice-server and spice-vdagent both enforce: a piece never holds
// bytes of two messages. The zero value accepts messages up to
// AgentMaxMessageSizeLimit.
type AgentAssembler struct {
	// MaxSize bounds a message's data (0: AgentMaxMessageSizeLimit).
	MaxSize uint32

	hdr  []byte
	msg  AgentMessage
	left uint32 // data bytes still expected; valid once len(hdr) == header size
}

// Feed adds one piece and returns the message it completed, if any.
func (a *AgentAssembler) Feed(piece []byte) (msg AgentMessage, done bool, err error) {
	if len(a.hdr) < AgentMessageHeaderSize {
		n := min(AgentMessageHeaderSize-len(a.hdr), len(piece))
		a.hdr = append(a.hdr, piece[:n]...)
		piece = piece[n:]
		if len(a.hdr) < AgentMessageHeaderSize {
			return AgentMessage{}, false, nil
		}
		proto, typ, opaque, size := le.Uint32(a.hdr), le.Uint32(a.hdr[4:]), le.Uint64(a.hdr[8:]), le.Uint32(a.hdr[16:])
		max := a.MaxSize
		if max == 0 {
			max = AgentMaxMessageSizeLimit
		}
		switch {
		case proto != AgentProtocol:
			a.Reset()
			return AgentMessage{}, false, fmt.Errorf("%w: agent protocol %d, want %d", ErrMalformed, proto, AgentProtocol)
		case size > max:
			a.Reset()
			return AgentMessage{}, false, fmt.Errorf("%w: agent %s of %d bytes, limit %d", ErrTooLarge, AgentTypeName(typ), size, max)
		}
		a.msg = AgentMessage{Type: typ, Opaque: opaque, Data: make([]byte, 0, size)}
		a.left = size
	}
	if uint32(len(piece)) > a.left {
		typ := a.msg.Type
		a.Reset()
		return AgentMessage{}, false, fmt.Errorf("%w: a piece holds %d bytes past the end of agent %s", ErrMalformed, uint32(len(piece))-a.left, AgentTypeName(typ))
	}
	a.msg.Data = append(a.msg.Data, piece...)
	a.left -= uint32(len(piece))
	if a.left > 0 {
		return AgentMessage{}, false, nil
	}
	msg = a.msg
	a.Reset()
	return msg, true, nil
}

// Reset drops a partly assembled message.
func (a *AgentAssembler) Reset() { a.hdr, a.msg, a.left = a.hdr[:0], AgentMessage{}, 0 }

// Pending reports whether a message is partly assembled.
func (a *AgentAssembler) Pending() bool { return len(a.hdr) > 0 }

// AppendChunkHeader appends a VDIChunkHeader.
func AppendChunkHeader(b []byte, port, size uint32) []byte {
	return le.AppendUint32(le.AppendUint32(b, port), size)
}

// ParseChunkHeader decodes a VDIChunkHeader.
func ParseChunkHeader(b []byte) (port, size uint32, err error) {
	if len(b) < ChunkHeaderSize {
		return 0, 0, fmt.Errorf("%w: VDI chunk header of %d bytes", ErrMalformed, len(b))
	}
	return le.Uint32(b), le.Uint32(b[4:]), nil
}

// AnnounceCaps is VD_AGENT_ANNOUNCE_CAPABILITIES: Request asks the peer
// to announce its own in return.
type AnnounceCaps struct {
	Request bool
	Caps    Caps
}

// Marshal encodes the body.
func (a AnnounceCaps) Marshal() []byte {
	var req uint32
	if a.Request {
		req = 1
	}
	b := le.AppendUint32(nil, req)
	for _, w := range a.Caps {
		b = le.AppendUint32(b, w)
	}
	return b
}

// ParseAnnounceCaps decodes the body (a partial trailing word is
// ignored, as spice-vdagent does).
func ParseAnnounceCaps(b []byte) (AnnounceCaps, error) {
	if len(b) < 4 {
		return AnnounceCaps{}, fmt.Errorf("%w: ANNOUNCE_CAPABILITIES of %d bytes", ErrMalformed, len(b))
	}
	a := AnnounceCaps{Request: le.Uint32(b) != 0}
	for b = b[4:]; len(b) >= 4; b = b[4:] {
		a.Caps = append(a.Caps, le.Uint32(b))
	}
	return a, nil
}

// ClipboardLayout says which optional fields clipboard messages carry:
// the 4-byte selection header when both ends announced
// AgentCapClipboardSelection, the grab serial (CLIPBOARD_GRAB only)
// when both announced AgentCapClipboardGrabSerial.
type ClipboardLayout struct {
	Selection bool
	Serial    bool
}

// ClipboardLayoutOf is the layout two ends with these caps use.
func ClipboardLayoutOf(mine, peer Caps) ClipboardLayout {
	return ClipboardLayout{
		Selection: mine.Has(AgentCapClipboardSelection) && peer.Has(AgentCapClipboardSelection),
		Serial:    mine.Has(AgentCapClipboardGrabSerial) && peer.Has(AgentCapClipboardGrabSerial),
	}
}

func (l ClipboardLayout) appendSelection(b []byte, sel uint8) []byte {
	if l.Selection {
		b = append(b, sel, 0, 0, 0)
	}
	return b
}

func (l ClipboardLayout) cutSelection(b []byte, what string) (uint8, []byte, error) {
	if !l.Selection {
		return SelectionClipboard, b, nil
	}
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("%w: %s of %d bytes has no selection", ErrMalformed, what, len(b))
	}
	return b[0], b[4:], nil
}

// ClipboardGrab is VD_AGENT_CLIPBOARD_GRAB: the sender owns the
// clipboard and offers these types.
type ClipboardGrab struct {
	Selection uint8
	Serial    uint32
	Types     []uint32
}

// Marshal encodes the body in layout l.
func (g ClipboardGrab) Marshal(l ClipboardLayout) []byte {
	b := l.appendSelection(nil, g.Selection)
	if l.Serial {
		b = le.AppendUint32(b, g.Serial)
	}
	for _, t := range g.Types {
		b = le.AppendUint32(b, t)
	}
	return b
}

// ParseClipboardGrab decodes a CLIPBOARD_GRAB body in layout l.
func ParseClipboardGrab(b []byte, l ClipboardLayout) (ClipboardGrab, error) {
	var g ClipboardGrab
	var err error
	if g.Selection, b, err = l.cutSelection(b, "CLIPBOARD_GRAB"); err != nil {
		return g, err
	}
	if l.Serial {
		if len(b) < 4 {
			return g, fmt.Errorf("%w: CLIPBOARD_GRAB has no serial", ErrMalformed)
		}
		g.Serial, b = le.Uint32(b), b[4:]
	}
	for ; len(b) >= 4; b = b[4:] {
		g.Types = append(g.Types, le.Uint32(b))
	}
	return g, nil
}

// ClipboardRequest is VD_AGENT_CLIPBOARD_REQUEST: send me the clipboard
// as Type.
type ClipboardRequest struct {
	Selection uint8
	Type      uint32
}

// Marshal encodes the body in layout l.
func (r ClipboardRequest) Marshal(l ClipboardLayout) []byte {
	return le.AppendUint32(l.appendSelection(nil, r.Selection), r.Type)
}

// ParseClipboardRequest decodes a CLIPBOARD_REQUEST body in layout l.
func ParseClipboardRequest(b []byte, l ClipboardLayout) (ClipboardRequest, error) {
	var r ClipboardRequest
	var err error
	if r.Selection, b, err = l.cutSelection(b, "CLIPBOARD_REQUEST"); err != nil {
		return r, err
	}
	if len(b) < 4 {
		return r, fmt.Errorf("%w: CLIPBOARD_REQUEST has no type", ErrMalformed)
	}
	r.Type = le.Uint32(b)
	return r, nil
}

// ClipboardData is VD_AGENT_CLIPBOARD: the clipboard's content as Type
// (the answer to a request; type NONE means "no data").
type ClipboardData struct {
	Selection uint8
	Type      uint32
	Data      []byte
}

// Marshal encodes the body in layout l.
func (c ClipboardData) Marshal(l ClipboardLayout) []byte {
	b := make([]byte, 0, 8+len(c.Data))
	b = le.AppendUint32(l.appendSelection(b, c.Selection), c.Type)
	return append(b, c.Data...)
}

// ParseClipboardData decodes a CLIPBOARD body in layout l (Data aliases b).
func ParseClipboardData(b []byte, l ClipboardLayout) (ClipboardData, error) {
	var c ClipboardData
	var err error
	if c.Selection, b, err = l.cutSelection(b, "CLIPBOARD"); err != nil {
		return c, err
	}
	if len(b) < 4 {
		return c, fmt.Errorf("%w: CLIPBOARD has no type", ErrMalformed)
	}
	c.Type, c.Data = le.Uint32(b), b[4:]
	return c, nil
}

// MarshalClipboardRelease encodes a CLIPBOARD_RELEASE body.
func MarshalClipboardRelease(l ClipboardLayout, sel uint8) []byte { return l.appendSelection(nil, sel) }

// FileXferStart is VD_AGENT_FILE_XFER_START. On the wire its data is a
// GLib key file, "[vdagent-file-xfer]\nname=…\nsize=…\n", and a NUL (what
// spice-gtk sends).
type FileXferStart struct {
	ID   uint32
	Name string
	Size uint64
}

// Marshal encodes the body.
func (s FileXferStart) Marshal() []byte {
	b := le.AppendUint32(nil, s.ID)
	b = fmt.Appendf(b, "[vdagent-file-xfer]\nname=%s\nsize=%d\n", escapeKeyFile(s.Name), s.Size)
	return append(b, 0)
}

// ParseFileXferStart decodes the body (name and size from the key file).
func ParseFileXferStart(b []byte) (FileXferStart, error) {
	if len(b) < 4 {
		return FileXferStart{}, fmt.Errorf("%w: FILE_XFER_START of %d bytes", ErrMalformed, len(b))
	}
	s := FileXferStart{ID: le.Uint32(b)}
	kv, err := parseKeyFileGroup(b[4:], "vdagent-file-xfer")
	if err != nil {
		return s, err
	}
	name, ok := kv["name"]
	if !ok || name == "" {
		return s, fmt.Errorf("%w: FILE_XFER_START without a name", ErrMalformed)
	}
	size, ok := kv["size"]
	if !ok {
		return s, fmt.Errorf("%w: FILE_XFER_START without a size", ErrMalformed)
	}
	if _, err := fmt.Sscan(size, &s.Size); err != nil {
		return s, fmt.Errorf("%w: FILE_XFER_START size %q", ErrMalformed, size)
	}
	s.Name = name
	return s, nil
}

// FileXferStatus is VD_AGENT_FILE_XFER_STATUS.
type FileXferStatus struct {
	ID     uint32
	Result uint32
	Data   []byte // detailed error (FILE_XFER_DETAILED_ERRORS)
}

// Marshal encodes the body.
func (s FileXferStatus) Marshal() []byte {
	return append(le.AppendUint32(le.AppendUint32(nil, s.ID), s.Result), s.Data...)
}

// ParseFileXferStatus decodes the body.
func ParseFileXferStatus(b []byte) (FileXferStatus, error) {
	if len(b) < 8 {
		return FileXferStatus{}, fmt.Errorf("%w: FILE_XFER_STATUS of %d bytes", ErrMalformed, len(b))
	}
	return FileXferStatus{ID: le.Uint32(b), Result: le.Uint32(b[4:]), Data: b[8:]}, nil
}

// MarshalFileXferData encodes a FILE_XFER_DATA body: u32 id, u64 size,
// then the bytes.
func MarshalFileXferData(id uint32, data []byte) []byte {
	b := make([]byte, 0, 12+len(data))
	b = le.AppendUint64(le.AppendUint32(b, id), uint64(len(data)))
	return append(b, data...)
}

// ParseFileXferData decodes a FILE_XFER_DATA body (data aliases b).
func ParseFileXferData(b []byte) (id uint32, data []byte, err error) {
	if len(b) < 12 {
		return 0, nil, fmt.Errorf("%w: FILE_XFER_DATA of %d bytes", ErrMalformed, len(b))
	}
	n := le.Uint64(b[4:])
	if n != uint64(len(b)-12) {
		return 0, nil, fmt.Errorf("%w: FILE_XFER_DATA claims %d bytes, carries %d", ErrMalformed, n, len(b)-12)
	}
	return le.Uint32(b), b[12:], nil
}

// MonConfig is one VDAgentMonConfig.
type MonConfig struct {
	Height, Width, Depth uint32
	X, Y                 int32
}

// MonitorsConfigFlagUsePos: the X and Y of each monitor are meant.
const MonitorsConfigFlagUsePos uint32 = 1

// MonitorsConfig is VD_AGENT_MONITORS_CONFIG.
type MonitorsConfig struct {
	Flags    uint32
	Monitors []MonConfig
}

// Marshal encodes the body.
func (m MonitorsConfig) Marshal() []byte {
	b := le.AppendUint32(le.AppendUint32(nil, uint32(len(m.Monitors))), m.Flags)
	for _, c := range m.Monitors {
		for _, v := range []uint32{c.Height, c.Width, c.Depth, uint32(c.X), uint32(c.Y)} {
			b = le.AppendUint32(b, v)
		}
	}
	return b
}

// maxMonitors bounds MONITORS_CONFIG (spice-server's own limit).
const maxMonitors = 256

// ParseMonitorsConfig decodes the body (trailing physical sizes, sent
// with MONITORS_CONFIG_FLAG_PHYSICAL_SIZE, are ignored).
func ParseMonitorsConfig(b []byte) (MonitorsConfig, error) {
	if len(b) < 8 {
		return MonitorsConfig{}, fmt.Errorf("%w: MONITORS_CONFIG of %d bytes", ErrMalformed, len(b))
	}
	n, m := le.Uint32(b), MonitorsConfig{Flags: le.Uint32(b[4:])}
	if n > maxMonitors || uint64(len(b)) < 8+20*uint64(n) {
		return MonitorsConfig{}, fmt.Errorf("%w: MONITORS_CONFIG claims %d monitors in %d bytes", ErrMalformed, n, len(b))
	}
	for i := range int(n) {
		p := b[8+20*i:]
		m.Monitors = append(m.Monitors, MonConfig{Height: le.Uint32(p), Width: le.Uint32(p[4:]), Depth: le.Uint32(p[8:]),
			X: int32(le.Uint32(p[12:])), Y: int32(le.Uint32(p[16:]))})
	}
	return m, nil
}

// AgentReplyMsg is VD_AGENT_REPLY: the result of a message of Type
// (MONITORS_CONFIG, DISPLAY_CONFIG).
type AgentReplyMsg struct {
	Type  uint32
	Error uint32 // AgentSuccess or AgentError
}

// Marshal encodes the body.
func (r AgentReplyMsg) Marshal() []byte {
	return le.AppendUint32(le.AppendUint32(nil, r.Type), r.Error)
}

// ParseAgentReply decodes the body.
func ParseAgentReply(b []byte) (AgentReplyMsg, error) {
	if len(b) < 8 {
		return AgentReplyMsg{}, fmt.Errorf("%w: REPLY of %d bytes", ErrMalformed, len(b))
	}
	return AgentReplyMsg{le.Uint32(b), le.Uint32(b[4:])}, nil
}
