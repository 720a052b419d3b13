package spice

import (
	"context"
	"fmt"
)

// VSC message types (vscard_common.h; the smartcard channel's
// vsc_message_type).
const (
	VSCInit          uint32 = 1
	VSCError         uint32 = 2
	VSCReaderAdd     uint32 = 3
	VSCReaderRemove  uint32 = 4
	VSCATR           uint32 = 5
	VSCCardRemove    uint32 = 6
	VSCAPDU          uint32 = 7
	VSCFlush         uint32 = 8
	VSCFlushComplete uint32 = 9
)

// VSCMessage is one smartcard channel message: a 12-byte header (u32
// type, u32 reader id, u32 length; little-endian on the SPICE wire —
// spice-server turns it to network order for qemu's ccid-card-passthru)
// and length bytes. spice-server handles READER_ADD and READER_REMOVE
// itself (it attaches the client to the card device) and passes ATR,
// APDU, ERROR and CARD_REMOVE on.
type VSCMessage struct {
	Type, ReaderID uint32
	Data           []byte
}

// Marshal encodes the body.
func (m VSCMessage) Marshal() []byte {
	b := le.AppendUint32(le.AppendUint32(nil, m.Type), m.ReaderID)
	return append(le.AppendUint32(b, uint32(len(m.Data))), m.Data...)
}

// ParseVSCMessage decodes the body (Data aliases b).
func ParseVSCMessage(b []byte) (VSCMessage, error) {
	if len(b) < 12 {
		return VSCMessage{}, fmt.Errorf("%w: smartcard message of %d bytes", ErrMalformed, len(b))
	}
	n := uint64(le.Uint32(b[8:]))
	if n > uint64(len(b)-12) {
		return VSCMessage{}, fmt.Errorf("%w: smartcard message claims %d bytes, carries %d", ErrMalformed, n, len(b)-12)
	}
	return VSCMessage{Type: le.Uint32(b), ReaderID: le.Uint32(b[4:]), Data: b[12 : 12+n]}, nil
}

// Smartcard is the smartcard channel, message by message.
type Smartcard struct{ *Channel }

// OpenSmartcard links smartcard:0.
func (s *Session) OpenSmartcard(ctx context.Context) (*Smartcard, error) {
	ch, err := s.open(ctx, ChannelSmartcard, 0, dialOpts{})
	if err != nil {
		return nil, err
	}
	return &Smartcard{ch}, nil
}

// SendVSC sends one VSC message.
func (sc *Smartcard) SendVSC(m VSCMessage) error { return sc.Send(MsgcSmartcardData, m.Marshal()) }

// RecvVSC waits for the next VSC message.
func (sc *Smartcard) RecvVSC(ctx context.Context) (VSCMessage, error) {
	m, err := sc.WaitFor(ctx, MsgSmartcardData)
	if err != nil {
		return VSCMessage{}, err
	}
	return ParseVSCMessage(m.Body)
}
