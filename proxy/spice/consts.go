package spice

import "fmt"

// Link header constants.
const (
	// Magic is "REDQ" read as a little-endian u32.
	Magic        uint32 = 0x51444552
	VersionMajor uint32 = 2
	VersionMinor uint32 = 2

	// LinkHeaderSize is the size of SpiceLinkHeader.
	LinkHeaderSize = 16
	// LinkMessSize is the fixed part of SpiceLinkMess (before the caps).
	LinkMessSize = 18
	// PubKeySize is SPICE_TICKET_PUBKEY_BYTES: an RSA-1024
	// SubjectPublicKeyInfo in DER.
	PubKeySize = 162
	// LinkReplySize is the fixed part of SpiceLinkReply (before the caps).
	LinkReplySize = 4 + PubKeySize + 12
	// TicketSize is the RSA-1024 ciphertext of the password.
	TicketSize = 128
	// MaxPasswordLength is what spice-server stores: a 60-byte password is
	// accepted by set_password but truncated to 59, so it never matches.
	MaxPasswordLength = 59

	// MiniHeaderSize and FullHeaderSize are the two data header sizes.
	MiniHeaderSize = 6
	FullHeaderSize = 18
)

// ChannelType is a SPICE channel type.
type ChannelType uint8

// Channel types (spice-protocol enums.h). Kerbside's table is off by one
// from 8 on; this one is not.
const (
	ChannelMain      ChannelType = 1
	ChannelDisplay   ChannelType = 2
	ChannelInputs    ChannelType = 3
	ChannelCursor    ChannelType = 4
	ChannelPlayback  ChannelType = 5
	ChannelRecord    ChannelType = 6
	ChannelTunnel    ChannelType = 7
	ChannelSmartcard ChannelType = 8
	ChannelUsbredir  ChannelType = 9
	ChannelPort      ChannelType = 10
	ChannelWebdav    ChannelType = 11
)

var channelNames = [...]string{
	ChannelMain: "main", ChannelDisplay: "display", ChannelInputs: "inputs",
	ChannelCursor: "cursor", ChannelPlayback: "playback", ChannelRecord: "record",
	ChannelTunnel: "tunnel", ChannelSmartcard: "smartcard", ChannelUsbredir: "usbredir",
	ChannelPort: "port", ChannelWebdav: "webdav",
}

// Known reports whether t is a channel type spice-protocol defines.
func (t ChannelType) Known() bool { return int(t) < len(channelNames) && channelNames[t] != "" }

func (t ChannelType) String() string {
	if t.Known() {
		return channelNames[t]
	}
	return fmt.Sprintf("channel(%d)", uint8(t))
}

// ParseChannelType maps a name ("display") back to its type.
func ParseChannelType(s string) (ChannelType, bool) {
	for i, n := range channelNames {
		if n != "" && n == s {
			return ChannelType(i), true
		}
	}
	return 0, false
}

// Common capability bits (first common caps word).
const (
	CapAuthSelection = 0 // a u32 mechanism word precedes the auth data
	CapAuthSpice     = 1 // mechanism 1: RSA ticket
	CapAuthSASL      = 2 // mechanism 2: SASL
	CapMiniHeader    = 3 // 6-byte data headers
)

// Auth mechanisms (the value is the cap's bit number).
const (
	AuthSpice uint32 = 1
	AuthSASL  uint32 = 2
)

// Per-channel capability bits.
const (
	// main
	CapMainSemiSeamlessMigrate  = 0
	CapMainNameAndUUID          = 1
	CapMainAgentConnectedTokens = 2
	CapMainSeamlessMigrate      = 3
	// display
	CapDisplaySizedStream        = 0
	CapDisplayMonitorsConfig     = 1
	CapDisplayComposite          = 2
	CapDisplayA8Surface          = 3
	CapDisplayStreamReport       = 4
	CapDisplayLZ4Compression     = 5
	CapDisplayPrefCompression    = 6
	CapDisplayGLScanout          = 7
	CapDisplayMultiCodec         = 8
	CapDisplayCodecMJPEG         = 9
	CapDisplayCodecVP8           = 10
	CapDisplayCodecH264          = 11
	CapDisplayPrefVideoCodecType = 12
	CapDisplayCodecVP9           = 13
	CapDisplayCodecH265          = 14
	// inputs
	CapInputsKeyScancode = 0
	// playback
	CapPlaybackCELT051 = 0
	CapPlaybackVolume  = 1
	CapPlaybackLatency = 2
	CapPlaybackOpus    = 3
	// record
	CapRecordCELT051 = 0
	CapRecordVolume  = 1
	CapRecordOpus    = 2
	// spicevmc (usbredir, port, webdav)
	CapSpicevmcDataCompressLZ4 = 0
)

// Server → client messages common to every channel.
const (
	MsgMigrate         uint16 = 1
	MsgMigrateData     uint16 = 2
	MsgSetAck          uint16 = 3
	MsgPing            uint16 = 4
	MsgWaitForChannels uint16 = 5
	MsgDisconnecting   uint16 = 6
	MsgNotify          uint16 = 7
	MsgList            uint16 = 8
)

// Client → server messages common to every channel.
const (
	MsgcAckSync          uint16 = 1
	MsgcAck              uint16 = 2
	MsgcPong             uint16 = 3
	MsgcMigrateFlushMark uint16 = 4
	MsgcMigrateData      uint16 = 5
	MsgcDisconnecting    uint16 = 6
)

// Main channel messages.
const (
	MsgMainMigrateBegin          uint16 = 101
	MsgMainMigrateCancel         uint16 = 102
	MsgMainInit                  uint16 = 103
	MsgMainChannelsList          uint16 = 104
	MsgMainMouseMode             uint16 = 105
	MsgMainMultiMediaTime        uint16 = 106
	MsgMainAgentConnected        uint16 = 107
	MsgMainAgentDisconnected     uint16 = 108
	MsgMainAgentData             uint16 = 109
	MsgMainAgentToken            uint16 = 110
	MsgMainMigrateSwitchHost     uint16 = 111
	MsgMainMigrateEnd            uint16 = 112
	MsgMainName                  uint16 = 113
	MsgMainUUID                  uint16 = 114
	MsgMainAgentConnectedTokens  uint16 = 115
	MsgMainMigrateBeginSeamless  uint16 = 116
	MsgMainMigrateDstSeamlessAck uint16 = 117
	MsgMainMigrateDstSeamlessNak uint16 = 118

	MsgcMainClientInfo               uint16 = 101
	MsgcMainMigrateConnected         uint16 = 102
	MsgcMainMigrateConnectError      uint16 = 103
	MsgcMainAttachChannels           uint16 = 104
	MsgcMainMouseModeRequest         uint16 = 105
	MsgcMainAgentStart               uint16 = 106
	MsgcMainAgentData                uint16 = 107
	MsgcMainAgentToken               uint16 = 108
	MsgcMainMigrateEnd               uint16 = 109
	MsgcMainMigrateDstDoSeamless     uint16 = 110
	MsgcMainMigrateConnectedSeamless uint16 = 111
)

// Display channel messages.
const (
	MsgDisplayMode             uint16 = 101
	MsgDisplayMark             uint16 = 102
	MsgDisplayReset            uint16 = 103
	MsgDisplayCopyBits         uint16 = 104
	MsgDisplayInvalList        uint16 = 105
	MsgDisplayInvalAllPixmaps  uint16 = 106
	MsgDisplayInvalPalette     uint16 = 107
	MsgDisplayInvalAllPalettes uint16 = 108
	MsgDisplayStreamCreate     uint16 = 122
	MsgDisplayStreamData       uint16 = 123
	MsgDisplayStreamClip       uint16 = 124
	MsgDisplayStreamDestroy    uint16 = 125
	MsgDisplayStreamDestroyAll uint16 = 126
	MsgDisplayDrawFill         uint16 = 302
	MsgDisplayDrawCopy         uint16 = 304
	MsgDisplaySurfaceCreate    uint16 = 314
	MsgDisplaySurfaceDestroy   uint16 = 315
	MsgDisplayStreamDataSized  uint16 = 316
	MsgDisplayMonitorsConfig   uint16 = 317
	MsgDisplayDrawComposite    uint16 = 318
	MsgDisplayStreamActReport  uint16 = 319
	MsgDisplayGLScanoutUnix    uint16 = 320
	MsgDisplayGLDraw           uint16 = 321
	MsgDisplayQualityIndicator uint16 = 322

	MsgcDisplayInit                    uint16 = 101
	MsgcDisplayStreamReport            uint16 = 102
	MsgcDisplayPreferredCompression    uint16 = 103
	MsgcDisplayGLDrawDone              uint16 = 104
	MsgcDisplayPreferredVideoCodecType uint16 = 105
)

// Inputs channel messages.
const (
	MsgInputsInit           uint16 = 101
	MsgInputsKeyModifiers   uint16 = 102
	MsgInputsMouseMotionAck uint16 = 111
	MsgcInputsKeyDown       uint16 = 101
	MsgcInputsKeyUp         uint16 = 102
	MsgcInputsKeyModifiers  uint16 = 103
	MsgcInputsKeyScancode   uint16 = 104
	MsgcInputsMouseMotion   uint16 = 111
	MsgcInputsMousePosition uint16 = 112
	MsgcInputsMousePress    uint16 = 113
	MsgcInputsMouseRelease  uint16 = 114
)

// Cursor channel messages (server only).
const (
	MsgCursorInit     uint16 = 101
	MsgCursorReset    uint16 = 102
	MsgCursorSet      uint16 = 103
	MsgCursorMove     uint16 = 104
	MsgCursorHide     uint16 = 105
	MsgCursorTrail    uint16 = 106
	MsgCursorInvalOne uint16 = 107
	MsgCursorInvalAll uint16 = 108
)

// SPICE_MSG_BASE_LAST: types below it are common to all channels.
const MsgBaseLast uint16 = 100

// spicevmc channels (usbredir, port, webdav). Smartcard's DATA has the
// same number.
const (
	MsgSpicevmcData           uint16 = 101
	MsgSpicevmcCompressedData uint16 = 102
	MsgPortInit               uint16 = 201
	MsgPortEvent              uint16 = 202

	MsgcSpicevmcData           uint16 = 101
	MsgcSpicevmcCompressedData uint16 = 102
	MsgcPortEvent              uint16 = 201
)

// Smartcard channel messages: VSC messages both ways.
const (
	MsgSmartcardData  uint16 = 101
	MsgcSmartcardData uint16 = 101
)

// Playback channel messages (server only).
const (
	MsgPlaybackData    uint16 = 101
	MsgPlaybackMode    uint16 = 102
	MsgPlaybackStart   uint16 = 103
	MsgPlaybackStop    uint16 = 104
	MsgPlaybackVolume  uint16 = 105
	MsgPlaybackMute    uint16 = 106
	MsgPlaybackLatency uint16 = 107
)

// Record channel messages.
const (
	MsgRecordStart  uint16 = 101
	MsgRecordStop   uint16 = 102
	MsgRecordVolume uint16 = 103
	MsgRecordMute   uint16 = 104

	MsgcRecordData      uint16 = 101
	MsgcRecordMode      uint16 = 102
	MsgcRecordStartMark uint16 = 103
)
