package spice

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzAgentAssembler: pieces cut from b (the first byte sets the piece
// size) never yield more message bytes than they carried, and every
// message yielded re-encodes to exactly the bytes it came from.
func FuzzAgentAssembler(f *testing.F) {
	f.Add(append([]byte{20}, AgentMessage{Type: AgentClipboard, Data: []byte("hello")}.Marshal()...))
	f.Add(append([]byte{0}, AgentMessage{Type: AgentReply, Data: AgentReplyMsg{AgentMonitorsConfig, AgentSuccess}.Marshal()}.Marshal()...))
	f.Add(append([]byte{3}, AppendAgentHeader(nil, AgentClipboard, 0, 0xffffffff)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		size := int(b[0])%64 + 1
		in := b[1:]
		a := AgentAssembler{MaxSize: 1 << 16}
		var consumed, since int
		for off := 0; off < len(in); off += size {
			p := in[off:min(off+size, len(in))]
			since += len(p)
			m, done, err := a.Feed(p)
			if err != nil {
				consumed, since = off+len(p), 0
				continue
			}
			if done {
				enc := m.Marshal()
				if !bytes.Equal(enc, in[consumed:consumed+since]) {
					t.Fatalf("message %v re-encodes to % x, came from % x", m, enc, in[consumed:consumed+since])
				}
				consumed, since = off+len(p), 0
			}
		}
	})
}

// FuzzAgentMessages: the agent message parsers never panic, and what
// they decode re-encodes to something that decodes the same.
func FuzzAgentMessages(f *testing.F) {
	full := ClipboardLayout{Selection: true, Serial: true}
	f.Add(uint8(3), ClipboardGrab{Selection: 1, Serial: 2, Types: []uint32{1, 2}}.Marshal(full))
	f.Add(uint8(0), AnnounceCaps{Request: true, Caps: DefaultAgentCaps}.Marshal())
	f.Add(uint8(1), FileXferStart{ID: 1, Name: "a.txt", Size: 5}.Marshal())
	f.Add(uint8(2), MonitorsConfig{Monitors: []MonConfig{{Height: 768, Width: 1024, Depth: 32}}}.Marshal())
	f.Add(uint8(0), MarshalFileXferData(1, []byte("abc")))
	f.Fuzz(func(t *testing.T, layout uint8, b []byte) {
		l := ClipboardLayout{Selection: layout&1 != 0, Serial: layout&2 != 0}
		same := func(what string, a, b any) {
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: %+v re-decodes as %+v", what, a, b)
			}
		}
		if g, err := ParseClipboardGrab(b, l); err == nil {
			g2, err := ParseClipboardGrab(g.Marshal(l), l)
			if err != nil {
				t.Fatal(err)
			}
			same("grab", g, g2)
		}
		if r, err := ParseClipboardRequest(b, l); err == nil {
			r2, _ := ParseClipboardRequest(r.Marshal(l), l)
			same("request", r, r2)
		}
		if c, err := ParseClipboardData(b, l); err == nil {
			c2, _ := ParseClipboardData(c.Marshal(l), l)
			same("clipboard", c, c2)
		}
		if a, err := ParseAnnounceCaps(b); err == nil {
			a2, _ := ParseAnnounceCaps(a.Marshal())
			same("announce", a, a2)
		}
		if s, err := ParseFileXferStart(b); err == nil {
			s2, err := ParseFileXferStart(s.Marshal())
			if err != nil {
				t.Fatalf("start %+v does not re-decode: %v", s, err)
			}
			same("xfer start", s, s2)
		}
		if m, err := ParseMonitorsConfig(b); err == nil {
			m2, _ := ParseMonitorsConfig(m.Marshal())
			same("monitors", m, m2)
		}
		if id, d, err := ParseFileXferData(b); err == nil && !bytes.Equal(MarshalFileXferData(id, d), b) {
			t.Fatal("FILE_XFER_DATA does not re-encode to its input")
		}
		ParseFileXferStatus(b)
		ParseAgentReply(b)
		ParseChunkHeader(b)
	})
}

// FuzzChannelMessages: the parsers of the port, audio, cursor, display
// and smartcard messages never panic, and round-trip what they decode.
func FuzzChannelMessages(f *testing.F) {
	f.Add([]byte("\x1d\x00\x00\x00\x09\x00\x00\x00\x00org.spice-space.harness.echo\x00"))
	f.Add([]byte{0x71, 0x31, 0xa6, 0x00, 0x03, 0x00})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0})
	f.Add(StreamCreate{ID: 1, Codec: CodecMJPEG, Clip: Clip{Type: ClipRects, Rects: []Rect{{1, 2, 3, 4}}}}.Marshal())
	f.Add(StreamData{ID: 1, Sized: true, Data: []byte("f")}.Marshal())
	f.Add(VSCMessage{Type: VSCReaderAdd, Data: []byte("reader\x00")}.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, err := ParsePortInit(b); err == nil {
			p2, err := ParsePortInit(p.Marshal())
			if err != nil || (p2 != p && !bytes.ContainsRune([]byte(p.Name), 0)) {
				t.Fatalf("PORT_INIT %+v re-decodes as %+v, %v", p, p2, err)
			}
		}
		if s, err := ParseStreamCreate(b); err == nil {
			s2, err := ParseStreamCreate(s.Marshal())
			if err != nil || !reflect.DeepEqual(s, s2) {
				t.Fatalf("STREAM_CREATE %+v re-decodes as %+v, %v", s, s2, err)
			}
		}
		for _, sized := range []bool{false, true} {
			if d, err := ParseStreamData(b, sized); err == nil {
				d2, err := ParseStreamData(d.Marshal(), sized)
				if err != nil || !reflect.DeepEqual(d, d2) {
					t.Fatalf("stream data %+v re-decodes as %+v, %v", d, d2, err)
				}
			}
		}
		if v, err := ParseVSCMessage(b); err == nil && !bytes.Equal(v.Marshal(), b[:12+len(v.Data)]) {
			t.Fatal("VSC message does not re-encode to its input")
		}
		for _, withTime := range []bool{false, true} {
			if s, err := ParseAudioStart(b, withTime); err == nil && !bytes.Equal(s.Marshal(withTime), b[:len(s.Marshal(withTime))]) {
				t.Fatal("audio START does not re-encode to its input")
			}
		}
		if m, err := ParsePlaybackMode(b); err == nil && !bytes.Equal(m.Marshal(), b) {
			t.Fatal("audio MODE does not re-encode to its input")
		}
		ParseAudioPacket(b)
		ParseAudioVolume(b)
		ParseCursorInit(b)
		ParseCursorSet(b)
		ParseCursorMove(b)
		ParseDisplayMonitors(b)
		ParseSurfaceCreate(b)
	})
}
