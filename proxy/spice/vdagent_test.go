package spice

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAgentPiecesAndAssembler(t *testing.T) {
	for _, n := range []int{0, 1, AgentMaxDataSize - AgentMessageHeaderSize, AgentMaxDataSize - AgentMessageHeaderSize + 1, 64 << 10, 1 << 20} {
		m := AgentMessage{Type: AgentClipboard, Opaque: 7, Data: bytes.Repeat([]byte{byte(n)}, n)}
		pieces := m.Pieces()
		want := (AgentMessageHeaderSize + n + AgentMaxDataSize - 1) / AgentMaxDataSize
		if len(pieces) != want {
			t.Errorf("%d bytes: %d pieces, want %d", n, len(pieces), want)
		}
		var a AgentAssembler
		for i, p := range pieces {
			if len(p) > AgentMaxDataSize {
				t.Fatalf("piece of %d bytes", len(p))
			}
			got, done, err := a.Feed(p)
			if err != nil || done != (i == len(pieces)-1) {
				t.Fatalf("%d bytes, piece %d: done %v, %v", n, i, done, err)
			}
			if done && (got.Type != m.Type || got.Opaque != m.Opaque || !bytes.Equal(got.Data, m.Data)) {
				t.Fatalf("%d bytes: reassembled %v, want %v", n, got, m)
			}
		}
	}
}

func TestAgentAssemblerRefuses(t *testing.T) {
	two := append(AgentMessage{Type: AgentClipboardRelease}.Marshal(), AgentMessage{Type: AgentClipboardRelease}.Marshal()...)
	bad := AgentMessage{Type: AgentReply}.Marshal()
	bad[0] = 2 // protocol 2
	huge := AppendAgentHeader(nil, AgentClipboard, 0, 1<<30)
	for _, tc := range []struct {
		name  string
		piece []byte
		want  error
	}{
		{"two messages in one piece", two, ErrMalformed},
		{"wrong protocol", bad, ErrMalformed},
		{"over the size limit", huge, ErrTooLarge},
	} {
		var a AgentAssembler
		if _, _, err := a.Feed(tc.piece); !errors.Is(err, tc.want) {
			t.Errorf("%s: unexpected error (-want +got):\n%s", tc.name, cmp.Diff(tc.want.Error(), errString(err)))
		}
		if a.Pending() {
			t.Errorf("%s: the assembler kept a partial message after an error", tc.name)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestClipboardLayouts(t *testing.T) {
	full := ClipboardLayout{Selection: true, Serial: true}
	g := ClipboardGrab{Selection: SelectionPrimary, Serial: 5, Types: []uint32{ClipboardUTF8Text, ClipboardPNG}}
	// selection byte, 3 reserved, serial, types.
	want := []byte{1, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0}
	if diff := cmp.Diff(want, g.Marshal(full)); diff != "" {
		t.Errorf("unexpected grab bytes (-want +got):\n%s", diff)
	}
	for _, l := range []ClipboardLayout{{}, {Selection: true}, full} {
		g2 := g
		if !l.Selection {
			g2.Selection = SelectionClipboard
		}
		if !l.Serial {
			g2.Serial = 0
		}
		got, err := ParseClipboardGrab(g2.Marshal(l), l)
		if err != nil || !cmp.Equal(g2, got) {
			t.Errorf("layout %+v: grab round trip %+v, %v", l, got, err)
		}
		d := ClipboardData{Selection: g2.Selection, Type: ClipboardUTF8Text, Data: []byte("hi")}
		if got, err := ParseClipboardData(d.Marshal(l), l); err != nil || !cmp.Equal(d, got) {
			t.Errorf("layout %+v: data round trip %+v, %v", l, got, err)
		}
		r := ClipboardRequest{Selection: g2.Selection, Type: ClipboardPNG}
		if got, err := ParseClipboardRequest(r.Marshal(l), l); err != nil || got != r {
			t.Errorf("layout %+v: request round trip %+v, %v", l, got, err)
		}
	}
	if l := ClipboardLayoutOf(DefaultAgentCaps, CapsOf(AgentCapClipboardSelection)); l != (ClipboardLayout{Selection: true}) {
		t.Errorf("a field needs both ends' cap: got %+v", l)
	}
}

func TestFileXferMessages(t *testing.T) {
	s := FileXferStart{ID: 3, Name: " odd\\name\twith\nescapes", Size: 8 << 20}
	b := s.Marshal()
	if !bytes.HasSuffix(b, []byte("\x00")) || !bytes.Contains(b, []byte("[vdagent-file-xfer]\nname=\\sodd\\\\name\\twith\\nescapes\nsize=8388608\n")) {
		t.Errorf("unexpected key file %q", b[4:])
	}
	got, err := ParseFileXferStart(b)
	if err != nil || got != s {
		t.Errorf("start round trip %+v, %v", got, err)
	}
	// spice-gtk's own bytes.
	gtk := append(le.AppendUint32(nil, 1), "[vdagent-file-xfer]\nname=a.txt\nsize=5\n\x00"...)
	if got, err := ParseFileXferStart(gtk); err != nil || got != (FileXferStart{ID: 1, Name: "a.txt", Size: 5}) {
		t.Errorf("spice-gtk start: %+v, %v", got, err)
	}
	id, data, err := ParseFileXferData(MarshalFileXferData(9, []byte("abc")))
	if err != nil || id != 9 || string(data) != "abc" {
		t.Errorf("data round trip %d %q %v", id, data, err)
	}
	if _, _, err := ParseFileXferData(le.AppendUint64(le.AppendUint32(nil, 1), 5)); err == nil {
		t.Error("FILE_XFER_DATA claiming 5 bytes with none: no error")
	}
}

func TestMonitorsConfigMessage(t *testing.T) {
	m := MonitorsConfig{Flags: MonitorsConfigFlagUsePos, Monitors: []MonConfig{{Height: 768, Width: 1024, Depth: 32}, {Height: 600, Width: 800, Depth: 32, X: -800}}}
	got, err := ParseMonitorsConfig(m.Marshal())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("unexpected monitors (-want +got):\n%s", diff)
	}
	if _, err := ParseMonitorsConfig(le.AppendUint32(le.AppendUint32(nil, 1000), 0)); err == nil {
		t.Error("1000 monitors in 8 bytes: no error")
	}
}

// The bytes below were captured from qemu 7.2 (spice-server 0.15.1).
func TestWireSamples(t *testing.T) {
	portInit := []byte("\x1d\x00\x00\x00\x09\x00\x00\x00\x00org.spice-space.harness.echo\x00")
	p, err := ParsePortInit(portInit)
	if err != nil || p != (PortInit{Name: "org.spice-space.harness.echo"}) {
		t.Errorf("PORT_INIT: %+v, %v", p, err)
	}
	if !bytes.Equal(p.Marshal(), portInit) {
		t.Errorf("PORT_INIT does not re-encode to qemu's bytes: % x", p.Marshal())
	}
	mode, err := ParsePlaybackMode([]byte{0x71, 0x31, 0xa6, 0x00, 0x03, 0x00})
	if err != nil || mode.Mode != AudioModeOpus || mode.Time != 0xa63171 {
		t.Errorf("PLAYBACK_MODE: %+v, %v", mode, err)
	}
	ci, err := ParseCursorInit([]byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0})
	if err != nil || !ci.Visible || ci.Cursor.Flags != CursorFlagNone || ci.Cursor.Header != nil {
		t.Errorf("CURSOR_INIT: %+v, %v", ci, err)
	}
	vsc, err := ParseVSCMessage([]byte{2, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0})
	if err != nil || vsc.Type != VSCError || len(vsc.Data) != 4 {
		t.Errorf("smartcard answer to READER_ADD: %+v, %v", vsc, err)
	}
}

func TestDisplayMessages(t *testing.T) {
	sc := StreamCreate{SurfaceID: 0, ID: 3, Codec: CodecMJPEG, Stamp: 99, StreamWidth: 320, StreamHeight: 240, SrcWidth: 320, SrcHeight: 240,
		Dest: Rect{10, 20, 250, 340}, Clip: Clip{Type: ClipRects, Rects: []Rect{{1, 2, 3, 4}}}}
	if got, err := ParseStreamCreate(sc.Marshal()); err != nil || !cmp.Equal(sc, got) {
		t.Errorf("STREAM_CREATE round trip: %+v, %v", got, err)
	}
	for _, sized := range []bool{false, true} {
		d := StreamData{ID: 3, MMTime: 5, Sized: sized, Data: []byte("frame")}
		if sized {
			d.Width, d.Height, d.Dest = 320, 240, Rect{0, 0, 240, 320}
		}
		if got, err := ParseStreamData(d.Marshal(), sized); err != nil || !cmp.Equal(d, got) {
			t.Errorf("stream data (sized %v) round trip: %+v, %v", sized, got, err)
		}
	}
}
