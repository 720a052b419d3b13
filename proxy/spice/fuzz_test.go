package spice

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// Seeds live in testdata/fuzz/<Target>/ too (including headers claiming
// 0xFFFFFFFF bytes); these f.Add calls keep the basics in code.

func FuzzLinkMess(f *testing.F) {
	f.Add((&LinkMess{ChannelType: ChannelMain, CommonCaps: Caps{0xd}, ChannelCaps: Caps{0xf}}).Marshal())
	f.Add((&LinkMess{ConnectionID: 9, ChannelType: ChannelDisplay, ChannelCaps: Caps{0x3bf}}).Marshal())
	f.Add(AppendLinkHeader(nil, 0xffffffff))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadLinkMess(bytes.NewReader(b), DefaultMaxLinkSize)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes to something that decodes the same.
		m2, err := ReadLinkMess(bytes.NewReader(m.Marshal()), DefaultMaxLinkSize)
		if err != nil {
			t.Fatalf("re-encoded link mess does not decode: %v", err)
		}
		if m.ConnectionID != m2.ConnectionID || m.ChannelType != m2.ChannelType || m.ChannelID != m2.ChannelID ||
			!m.CommonCaps.Equal(m2.CommonCaps) || !m.ChannelCaps.Equal(m2.ChannelCaps) {
			t.Fatalf("round trip changed the link mess: %+v → %+v", m, m2)
		}
	})
}

func FuzzLinkReply(f *testing.F) {
	k, err := GenerateLinkKey()
	if err != nil {
		f.Fatal(err)
	}
	f.Add((&LinkReply{PubKey: k.Public, CommonCaps: Caps{0xb}, ChannelCaps: Caps{0x1052}}).Marshal())
	f.Add(MarshalLinkError(ErrNeedSecured))
	f.Add(AppendLinkHeader(nil, 0xffffffff))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ReadLinkReply(bytes.NewReader(b), DefaultMaxLinkSize)
		if err != nil {
			return
		}
		r2, err := ReadLinkReply(bytes.NewReader(r.Marshal()), DefaultMaxLinkSize)
		if err != nil {
			t.Fatalf("re-encoded reply does not decode: %v", err)
		}
		if r.Error != r2.Error || !bytes.Equal(r.PubKey, r2.PubKey) || !r.CommonCaps.Equal(r2.CommonCaps) || !r.ChannelCaps.Equal(r2.ChannelCaps) {
			t.Fatalf("round trip changed the reply: %+v → %+v", r, r2)
		}
		if r.Error == LinkOK {
			// A decoded key must not crash the ticket encryption.
			EncryptTicket(r.PubKey, "hunter2")
		}
	})
}

func FuzzReader(f *testing.F) {
	f.Add(true, AppendHeader(nil, Header{Type: MsgMainInit, Size: 32}, true))
	f.Add(false, AppendHeader(nil, Header{Serial: 1, Type: MsgMainInit, Size: 32}, false))
	f.Add(true, AppendHeader(nil, Header{Type: MsgDisplayDrawCopy, Size: 0xffffffff}, true))
	f.Add(false, AppendHeader(nil, Header{Type: MsgDisplayDrawCopy, Size: 0xffffffff}, false))
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, mini bool, b []byte) {
		r := NewReader(bytes.NewReader(b), mini, limit)
		var total int
		for {
			m, err := r.ReadMessage()
			if err != nil {
				if errors.Is(err, ErrTooLarge) && m.Size <= limit {
					t.Fatalf("ErrTooLarge for %d bytes under the %d limit", m.Size, limit)
				}
				if err != io.EOF && !errors.Is(err, ErrTooLarge) && err != io.ErrUnexpectedEOF {
					t.Fatalf("unexpected error kind: %v", err)
				}
				break
			}
			if uint32(len(m.Body)) != m.Size || m.Size > limit {
				t.Fatalf("body of %d bytes for a header of %d", len(m.Body), m.Size)
			}
			total += HeaderSize(mini) + len(m.Body)
		}
		if total > len(b) {
			t.Fatalf("read %d bytes of messages from %d bytes of input", total, len(b))
		}
	})
}

func FuzzMainInit(f *testing.F) {
	f.Add(MainInit{SessionID: 0x8657f94c, DisplayChannelsHint: 1, SupportedMouseModes: 1, CurrentMouseMode: 1, AgentTokens: 10, MultiMediaTime: 475455, RAMHint: 0x02ffe000}.Marshal())
	f.Add(MarshalChannelsList([]ChannelID{{ChannelDisplay, 0}, {ChannelCursor, 0}, {ChannelInputs, 0}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := ParseMainInit(b); err == nil {
			if !bytes.Equal(m.Marshal(), b[:MainInitSize]) {
				t.Fatal("MAIN_INIT does not re-encode to its input")
			}
		}
		if ids, err := ParseChannelsList(b); err == nil {
			if got := MarshalChannelsList(ids); !bytes.Equal(got, b[:len(got)]) {
				t.Fatal("CHANNELS_LIST does not re-encode to its input")
			}
		}
		ParseNotify(b)
		ParsePing(b)
		ParseSetAck(b)
		ParseDisconnecting(b)
	})
}

// FuzzLinkHeader: reading the header field by field (ReadLinkHeader)
// decides exactly as decoding all 16 bytes at once (ParseLinkHeader),
// and reads no byte past the field that decided a refusal.
func FuzzLinkHeader(f *testing.F) {
	f.Add(AppendLinkHeader(nil, 26))
	f.Add(AppendLinkHeader(nil, 0xffffffff))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		h, err := ReadLinkHeader(r, LinkMessSize, DefaultMaxLinkSize)
		read := len(b) - r.Len()
		if len(b) < LinkHeaderSize {
			if err == nil {
				t.Fatalf("%d bytes decoded as a whole header", len(b))
			}
			return
		}
		h2, err2 := ParseLinkHeader(b, LinkMessSize, DefaultMaxLinkSize)
		code, ok := CodeOf(err)
		code2, ok2 := CodeOf(err2)
		if code != code2 || ok != ok2 || (err == nil) != (err2 == nil) {
			t.Fatalf("field by field: %v; all at once: %v", err, err2)
		}
		want := LinkHeaderSize
		switch code {
		case ErrInvalidMagic:
			want = 4
		case ErrVersionMismatch:
			want = 8
		}
		if read != want {
			t.Fatalf("read %d bytes to answer %v, want %d", read, err, want)
		}
		if err == nil && h != h2 {
			t.Fatalf("decoded %+v, ParseLinkHeader %+v", h, h2)
		}
	})
}
